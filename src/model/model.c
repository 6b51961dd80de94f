/*
** model.c — loading a checkpoint into a tw_model: a directory, or a packed single-file checkpoint
** (`tower quantize` output) whose config / tokenizer / template files are read from its mapping
** through the same file-source calls (tw_src, tw_internal.h).
**
** Three architectures share one text model (Gemma2):
**   llava_next      (LlavaNextForConditionalGeneration, TowerVision)   text_config + vision_config
**   llava_onevision (LlavaOnevisionForConditionalGeneration, TowerVideo)
**   gemma2          (Gemma2ForCausalLM, Tower+ text models)            config fields at top level
**
** Tensor names come in two layouts: transformers >= 4.52 (model.language_model.*, lm_head.weight,
** model.vision_tower.*, ...) and the legacy one the conversion scripts wrote
** (language_model.model.*, language_model.lm_head.weight, vision_tower.*, ...). We detect which
** one the file uses from the embedding's name rather than from transformers_version, which is not
** reliable. Every tensor the forward code will touch is checked here for presence, dtype and exact
** shape, so a bad checkpoint fails at load with the tensor's name instead of crashing later.
*/
#include "model.h"
#include "hub.h"
#include "quant.h"
#include "wtype.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- parameters --------------------------------------------------------------------------------- */

tw_model_params tw_model_default_params(void) {
    tw_model_params p = {0};
    p.n_threads = 0;
    p.final_softcap = -1;
    return p;
}

/* ---- config helpers ------------------------------------------------------------------------- */

/* Reads an int field into int32 and checks it lies in [lo, hi]. Absent optional fields keep *out. */
static tw_status cfg_i32(const json_t *j, const char *file, const char *key, bool required, int64_t lo,
                         int64_t hi, int32_t *out) {
    int64_t v = *out;
    TW_TRY(tw_json_int(j, file, key, required, &v));
    if (v < lo || v > hi)
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" is %lld, expected %lld..%lld", file, key, (long long)v,
                      (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return TW_OK;
}

static tw_status cfg_f32(const json_t *j, const char *file, const char *key, bool required, float *out) {
    double v = *out;
    TW_TRY(tw_json_num(j, file, key, required, &v));
    *out = (float)v;
    return TW_OK;
}

/* The GELU variant Gemma2 and SigLIP use; anything else would silently give wrong numbers. */
static tw_status cfg_act(const json_t *j, const char *file, const char *key, const char *alt) {
    const char *v = NULL, *used = key;
    TW_TRY(tw_json_str(j, file, key, false, &v));
    if (!v && alt) {
        TW_TRY(tw_json_str(j, file, alt, false, &v));
        used = alt;
    }
    if (v && strcmp(v, "gelu_pytorch_tanh") != 0)
        return tw_err(TW_E_UNSUPPORTED, "%s: field \"%s\" is \"%s\", only \"gelu_pytorch_tanh\" is supported", file,
                      used, v);
    return TW_OK;
}

#define I32MAX 2147483647

/* Fills m->text from the Gemma2 fields found under prefix ("" or "text_config."). */
static tw_status parse_gemma2(tw_model *m, const json_t *j, const char *file, const char *pre) {
    tw_gemma2_config *c = &m->text;
    char k[128];
#define KEY(name) (snprintf(k, sizeof k, "%s%s", pre, name), k)
    TW_TRY(cfg_i32(j, file, KEY("vocab_size"), true, 1, I32MAX, &c->n_vocab));
    TW_TRY(cfg_i32(j, file, KEY("hidden_size"), true, 1, 1 << 20, &c->n_embd));
    TW_TRY(cfg_i32(j, file, KEY("intermediate_size"), true, 1, 1 << 22, &c->n_ff));
    TW_TRY(cfg_i32(j, file, KEY("num_hidden_layers"), true, 1, 4096, &c->n_layer));
    TW_TRY(cfg_i32(j, file, KEY("num_attention_heads"), true, 1, 4096, &c->n_head));
    c->n_head_kv = c->n_head;
    TW_TRY(cfg_i32(j, file, KEY("num_key_value_heads"), false, 1, 4096, &c->n_head_kv));
    if (c->n_head % c->n_head_kv)
        return tw_err(TW_E_CONFIG, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", file,
                      c->n_head, c->n_head_kv);
    /* transformers' default head_dim is hidden_size / num_attention_heads */
    c->head_dim = c->n_embd / c->n_head;
    TW_TRY(cfg_i32(j, file, KEY("head_dim"), false, 1, 1 << 16, &c->head_dim));
    if (c->head_dim % 2)
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" is %d; rotary embeddings need an even head_dim", file,
                      KEY("head_dim"), c->head_dim);
    c->n_ctx_train = 8192;
    TW_TRY(cfg_i32(j, file, KEY("max_position_embeddings"), false, 1, I32MAX, &c->n_ctx_train));
    c->sliding_window = 0;
    TW_TRY(cfg_i32(j, file, KEY("sliding_window"), false, 0, I32MAX, &c->sliding_window));
    c->rms_eps = 1e-6f;
    TW_TRY(cfg_f32(j, file, KEY("rms_norm_eps"), false, &c->rms_eps));
    c->rope_theta = 10000.0f;
    TW_TRY(cfg_f32(j, file, KEY("rope_theta"), false, &c->rope_theta));
    if (!(c->rope_theta > 0))
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be positive", file, KEY("rope_theta"));
    const json_t *rs = tw_json_path(j, KEY("rope_scaling"));
    if (rs && !json_is_null(rs)) {
        const char *rt = NULL;
        if (json_is_object(rs)) (void)tw_json_str(rs, file, "rope_type", false, &rt);
        if (!rt || strcmp(rt, "default") != 0)
            return tw_err(TW_E_UNSUPPORTED, "%s: field \"%s\": rope scaling \"%s\" is not supported", file, k,
                          rt ? rt : "?");
    }
    c->query_pre_attn_scalar = (float)c->head_dim;
    TW_TRY(cfg_f32(j, file, KEY("query_pre_attn_scalar"), false, &c->query_pre_attn_scalar));
    if (!(c->query_pre_attn_scalar > 0))
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be positive", file, KEY("query_pre_attn_scalar"));
    c->attn_softcap = 0;   /* null or absent: off */
    TW_TRY(cfg_f32(j, file, KEY("attn_logit_softcapping"), false, &c->attn_softcap));
    c->final_softcap = 0;
    TW_TRY(cfg_f32(j, file, KEY("final_logit_softcapping"), false, &c->final_softcap));
    if (c->attn_softcap < 0 || c->final_softcap < 0)
        return tw_err(TW_E_CONFIG, "%s: softcapping values must not be negative", file);
    char alt[128];
    snprintf(alt, sizeof alt, "%shidden_act", pre);
    TW_TRY(cfg_act(j, file, KEY("hidden_activation"), alt));

    c->layer_sliding = tw_calloc((size_t)c->n_layer, 1);
    if (!c->layer_sliding) return TW_E_NOMEM;
    const json_t *lt = tw_json_path(j, KEY("layer_types"));
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layer)
            return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be a list of %d strings (num_hidden_layers)", file, k,
                          c->n_layer);
        for (int i = 0; i < c->n_layer; i++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)i));
            if (s && strcmp(s, "sliding_attention") == 0) c->layer_sliding[i] = 1;
            else if (!s || strcmp(s, "full_attention") != 0)
                return tw_err(TW_E_CONFIG, "%s: field \"%s\"[%d] is %s%s%s, expected \"sliding_attention\" or "
                              "\"full_attention\"", file, k, i, s ? "\"" : "", s ? s : "not a string", s ? "\"" : "");
        }
    } else {
        /* transformers' Gemma2: layer i slides when i % 2 == 0 */
        for (int i = 0; i < c->n_layer; i++) c->layer_sliding[i] = (i % 2 == 0);
    }
    c->tie_embeddings = true;
    TW_TRY(tw_json_bool(j, file, KEY("tie_word_embeddings"), false, &c->tie_embeddings));
#undef KEY
    return TW_OK;
}

static tw_status parse_vision(tw_model *m, const json_t *j, const char *file) {
    tw_siglip_config *v = &m->vision;
    const char *mt = NULL;
    TW_TRY(tw_json_str(j, file, "vision_config.model_type", false, &mt));
    if (mt && strcmp(mt, "siglip_vision_model") != 0 && strcmp(mt, "siglip") != 0)
        return tw_err(TW_E_UNSUPPORTED, "%s: field \"vision_config.model_type\" is \"%s\", only SigLIP "
                      "(\"siglip_vision_model\") is supported", file, mt);
    TW_TRY(cfg_i32(j, file, "vision_config.hidden_size", true, 1, 1 << 16, &v->n_embd));
    TW_TRY(cfg_i32(j, file, "vision_config.intermediate_size", true, 1, 1 << 20, &v->n_ff));
    TW_TRY(cfg_i32(j, file, "vision_config.num_hidden_layers", true, 1, 1024, &v->n_layer));
    TW_TRY(cfg_i32(j, file, "vision_config.num_attention_heads", true, 1, 1024, &v->n_head));
    TW_TRY(cfg_i32(j, file, "vision_config.image_size", true, 1, 1 << 16, &v->image_size));
    TW_TRY(cfg_i32(j, file, "vision_config.patch_size", true, 1, 1 << 16, &v->patch_size));
    v->n_channels = 3;
    TW_TRY(cfg_i32(j, file, "vision_config.num_channels", false, 1, 16, &v->n_channels));
    v->ln_eps = 1e-6f;
    TW_TRY(cfg_f32(j, file, "vision_config.layer_norm_eps", false, &v->ln_eps));
    TW_TRY(cfg_act(j, file, "vision_config.hidden_act", NULL));
    if (v->n_embd % v->n_head)
        return tw_err(TW_E_CONFIG, "%s: vision_config.hidden_size %d is not a multiple of num_attention_heads %d",
                      file, v->n_embd, v->n_head);
    if (v->patch_size > v->image_size)
        return tw_err(TW_E_CONFIG, "%s: vision_config.patch_size %d is larger than image_size %d", file,
                      v->patch_size, v->image_size);

    TW_TRY(cfg_i32(j, file, "image_token_index", true, 0, I32MAX, &m->image_token_id));
    if (m->arch == TW_ARCH_LLAVA_ONEVISION)
        TW_TRY(cfg_i32(j, file, "video_token_index", false, 0, I32MAX, &m->video_token_id));
    if (m->image_token_id >= m->text.n_vocab)
        return tw_err(TW_E_CONFIG, "%s: image_token_index %d is outside the vocabulary (vocab_size %d)", file,
                      m->image_token_id, m->text.n_vocab);
    if (m->video_token_id >= m->text.n_vocab)
        return tw_err(TW_E_CONFIG, "%s: video_token_index %d is outside the vocabulary (vocab_size %d)", file,
                      m->video_token_id, m->text.n_vocab);

    /* hidden_states has n_layer + 1 entries (embeddings, then every layer); Python indexing. */
    const json_t *fl = json_object_get(j, "vision_feature_layer");
    if (fl && json_is_array(fl))
        return tw_err(TW_E_UNSUPPORTED, "%s: field \"vision_feature_layer\" is a list (several layers "
                      "concatenated); only a single layer is supported", file);
    m->vision_feature_layer = -2;   /* transformers' default */
    TW_TRY(cfg_i32(j, file, "vision_feature_layer", false, -(v->n_layer + 1), v->n_layer, &m->vision_feature_layer));

    const char *strat = "default";
    TW_TRY(tw_json_str(j, file, "vision_feature_select_strategy", false, &strat));
    if (strcmp(strat, "full") != 0 && strcmp(strat, "default") != 0)
        return tw_err(TW_E_CONFIG, "%s: field \"vision_feature_select_strategy\" is \"%s\", expected \"full\" or "
                      "\"default\"", file, strat);
    m->vision_feature_select_strategy = tw_strdup(strat);
    if (!m->vision_feature_select_strategy) return TW_E_NOMEM;

    const char *act = "gelu";
    TW_TRY(tw_json_str(j, file, "projector_hidden_act", false, &act));
    if (strcmp(act, "gelu") != 0)
        return tw_err(TW_E_UNSUPPORTED, "%s: field \"projector_hidden_act\" is \"%s\", only \"gelu\" is supported",
                      file, act);

    const json_t *pp = json_object_get(j, "image_grid_pinpoints");
    if (pp && !json_is_null(pp)) {
        size_t n = json_is_array(pp) ? json_array_size(pp) : 0;
        if (!n)
            return tw_err(TW_E_CONFIG, "%s: field \"image_grid_pinpoints\" must be a non-empty list of [height, "
                          "width]", file);
        m->pinpoints = tw_calloc(n * 2, sizeof *m->pinpoints);
        if (!m->pinpoints) return TW_E_NOMEM;
        for (size_t i = 0; i < n; i++) {
            const json_t *e = json_array_get(pp, i);
            const json_t *h = json_array_get(e, 0), *w = json_array_get(e, 1);
            if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(h) || !json_is_integer(w) ||
                json_integer_value(h) <= 0 || json_integer_value(w) <= 0 || json_integer_value(h) > 1 << 20 ||
                json_integer_value(w) > 1 << 20)
                return tw_err(TW_E_CONFIG, "%s: field \"image_grid_pinpoints\"[%zu] is not [height, width] positive "
                              "integers", file, i);
            m->pinpoints[2 * i] = (int32_t)json_integer_value(h);
            m->pinpoints[2 * i + 1] = (int32_t)json_integer_value(w);
        }
        m->n_pinpoints = (int32_t)n;
    }

    /* OneVision shrinks big unpadded grids to about N tiles' worth ("anyres_max_N", the class
    ** default); LlavaNext never does. */
    if (m->arch == TW_ARCH_LLAVA_ONEVISION) {
        const char *var = "anyres_max_9";
        TW_TRY(tw_json_str(j, file, "vision_aspect_ratio", false, &var));
        int n = 0;
        if (strcmp(var, "anyres") == 0) m->max_num_patches = 0;
        else if (sscanf(var, "anyres_max_%d", &n) == 1 && n > 0) m->max_num_patches = n;
        else
            return tw_err(TW_E_UNSUPPORTED, "%s: field \"vision_aspect_ratio\" is \"%s\", expected \"anyres\" or "
                          "\"anyres_max_N\"", file, var);
    }
    return TW_OK;
}

/* ---- tensor checks -------------------------------------------------------------------------- */

typedef struct loader {
    tw_model   *m;
    const char *wfile;   /* where a missing tensor should have been (file or index) */
} loader;

/* Looks a tensor up and checks dtype and shape. ndim dims follow in d[]; why explains the
** expected shape in config terms for the message. optional: absent is fine (*out = NULL). */
static tw_status need(loader *L, const tw_tensor **out, bool optional, const char *why, int ndim, const int64_t *d,
                      const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static tw_status need(loader *L, const tw_tensor **out, bool optional, const char *why, int ndim, const int64_t *d,
                      const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const tw_tensor *t = tw_st_get(L->m->st, name);
    *out = t;
    if (!t) {
        if (optional) return TW_OK;
        return tw_err(TW_E_WEIGHTS, "%s: tensor \"%s\" is missing (%s)", L->wfile, name, why);
    }
    /* A type the kernels have no table entry for (src/cpu/wtype.c) is refused here, naming the
    ** tensor; quantized blocks (retyped at open by tw_quant_apply) only for matrices, read by the
    ** kernels with unaligned loads. */
    TW_TRY(tw_wtype_check(t, ndim));
    bool quant = tw_dtype_is_quant(t->type);
    /* The kernels load elements straight from the mapping: they must be naturally aligned
    ** (always true for files written by the safetensors library, which orders data by width). */
    if (!quant && (uintptr_t)t->data % tw_dtype_size(t->type))
        return tw_err(TW_E_UNSUPPORTED, "%s: tensor \"%s\": %s data is not aligned to %zu bytes in the file", t->file,
                      name, tw_dtype_name(t->type), tw_dtype_size(t->type));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == d[i];
    if (!ok) {
        char got[128] = "", want[128] = "";
        size_t a = 0, b = 0;
        for (int i = 0; i < t->ndim; i++)
            a += (size_t)snprintf(got + a, sizeof got - a, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        for (int i = 0; i < ndim; i++)
            b += (size_t)snprintf(want + b, sizeof want - b, "%s%lld", i ? ", " : "", (long long)d[i]);
        return tw_err(TW_E_WEIGHTS, "%s: tensor \"%s\": shape [%s], expected [%s] (%s)", t->file, name, got, want, why);
    }
    return TW_OK;
}

/* Widens a small tensor (norm weights) to f32 once. */
static tw_status widen(const tw_tensor *t, float **out) {
    *out = tw_malloc((size_t)tw_tensor_nelem(t) * sizeof(float) + 1);
    if (!*out) return TW_E_NOMEM;
    tw_tensor_to_f32(t, *out);
    return TW_OK;
}

/* An F32 copy of a small tensor as a tensor of its own (one block: the struct, then the data), for
** the kernels that take a tw_tensor (tw_matmul's bias). NULL stays NULL. */
static tw_status widen_tensor(const tw_tensor *t, tw_tensor **out) {
    *out = NULL;
    if (!t) return TW_OK;
    size_t n = (size_t)tw_tensor_nelem(t);
    tw_tensor *w = tw_malloc(sizeof *w + n * sizeof(float) + 1);
    if (!w) return TW_E_NOMEM;
    *w = *t;
    w->type = TW_DT_F32;
    w->data = w + 1;
    w->nbytes = n * sizeof(float);
    tw_tensor_to_f32(t, (float *)(w + 1));
    *out = w;
    return TW_OK;
}

tw_status tw_model_widen_vision(tw_model *m) {
    tw_siglip_weights *w = &m->vw;
    for (int i = 0; i < m->vision.n_layer; i++) {
        tw_siglip_layer *l = &w->layers[i];
        TW_TRY(widen(l->ln1_w, &l->ln1_w_f));
        TW_TRY(widen(l->ln1_b, &l->ln1_b_f));
        TW_TRY(widen(l->ln2_w, &l->ln2_w_f));
        TW_TRY(widen(l->ln2_b, &l->ln2_b_f));
        TW_TRY(widen_tensor(l->bq, &l->bq_f));
        TW_TRY(widen_tensor(l->bk, &l->bk_f));
        TW_TRY(widen_tensor(l->bv, &l->bv_f));
        TW_TRY(widen_tensor(l->bo, &l->bo_f));
        TW_TRY(widen_tensor(l->fc1_b, &l->fc1_b_f));
        TW_TRY(widen_tensor(l->fc2_b, &l->fc2_b_f));
    }
    TW_TRY(widen_tensor(w->patch_b, &w->patch_b_f));
    TW_TRY(widen(w->pos_embd, &w->pos_embd_f));
    TW_TRY(widen_tensor(m->proj.b1, &m->proj.b1_f));
    TW_TRY(widen_tensor(m->proj.b2, &m->proj.b2_f));
    if (m->image_newline) TW_TRY(widen(m->image_newline, &m->image_newline_f));
    return TW_OK;
}

static tw_status load_text(loader *L, const char *lm, const char *head_name, const char *head_alt) {
    tw_model *m = L->m;
    const tw_gemma2_config *c = &m->text;
    const int64_t H = c->n_embd, V = c->n_vocab, F = c->n_ff, D = c->head_dim;
    char w_e[128], w_q[160], w_kv[160], w_o[160], w_h[64], w_f[128], w_d[128];
    snprintf(w_e, sizeof w_e, "vocab_size %lld, hidden_size %lld", (long long)V, (long long)H);
    snprintf(w_h, sizeof w_h, "hidden_size %lld", (long long)H);
    snprintf(w_q, sizeof w_q, "num_attention_heads %d x head_dim %lld, hidden_size %lld", c->n_head, (long long)D,
             (long long)H);
    snprintf(w_kv, sizeof w_kv, "num_key_value_heads %d x head_dim %lld, hidden_size %lld", c->n_head_kv,
             (long long)D, (long long)H);
    snprintf(w_o, sizeof w_o, "hidden_size %lld, num_attention_heads %d x head_dim %lld", (long long)H, c->n_head,
             (long long)D);
    snprintf(w_f, sizeof w_f, "intermediate_size %lld, hidden_size %lld", (long long)F, (long long)H);
    snprintf(w_d, sizeof w_d, "hidden_size %lld, intermediate_size %lld", (long long)H, (long long)F);
    const int64_t dE[2] = { V, H }, dH[1] = { H }, dQ[2] = { c->n_head * D, H }, dKV[2] = { c->n_head_kv * D, H },
                  dO[2] = { H, c->n_head * D }, dF[2] = { F, H }, dD[2] = { H, F };
    tw_gemma2_weights *w = &m->tw;
    TW_TRY(need(L, &w->embed, false, w_e, 2, dE, "%sembed_tokens.weight", lm));
    TW_TRY(need(L, &w->norm, false, w_h, 1, dH, "%snorm.weight", lm));
    TW_TRY(widen(w->norm, &w->norm_f));
    TW_TRY(need(L, &w->lm_head, true, w_e, 2, dE, "%s", head_name));
    if (!w->lm_head && head_alt) TW_TRY(need(L, &w->lm_head, true, w_e, 2, dE, "%s", head_alt));
    m->text.tie_embeddings = w->lm_head == NULL;
    if (!w->lm_head) w->lm_head = w->embed;   /* tied: Gemma2's default, and what the files say */

    w->layers = tw_calloc((size_t)c->n_layer, sizeof *w->layers);
    if (!w->layers) return TW_E_NOMEM;
    for (int i = 0; i < c->n_layer; i++) {
        tw_gemma2_layer *l = &w->layers[i];
        TW_TRY(need(L, &l->attn_norm, false, w_h, 1, dH, "%slayers.%d.input_layernorm.weight", lm, i));
        TW_TRY(need(L, &l->wq, false, w_q, 2, dQ, "%slayers.%d.self_attn.q_proj.weight", lm, i));
        TW_TRY(need(L, &l->wk, false, w_kv, 2, dKV, "%slayers.%d.self_attn.k_proj.weight", lm, i));
        TW_TRY(need(L, &l->wv, false, w_kv, 2, dKV, "%slayers.%d.self_attn.v_proj.weight", lm, i));
        TW_TRY(need(L, &l->wo, false, w_o, 2, dO, "%slayers.%d.self_attn.o_proj.weight", lm, i));
        TW_TRY(need(L, &l->post_attn_norm, false, w_h, 1, dH, "%slayers.%d.post_attention_layernorm.weight", lm, i));
        TW_TRY(need(L, &l->ffn_norm, false, w_h, 1, dH, "%slayers.%d.pre_feedforward_layernorm.weight", lm, i));
        TW_TRY(need(L, &l->w_gate, false, w_f, 2, dF, "%slayers.%d.mlp.gate_proj.weight", lm, i));
        TW_TRY(need(L, &l->w_up, false, w_f, 2, dF, "%slayers.%d.mlp.up_proj.weight", lm, i));
        TW_TRY(need(L, &l->w_down, false, w_d, 2, dD, "%slayers.%d.mlp.down_proj.weight", lm, i));
        TW_TRY(need(L, &l->post_ffn_norm, false, w_h, 1, dH, "%slayers.%d.post_feedforward_layernorm.weight", lm, i));
        TW_TRY(widen(l->attn_norm, &l->attn_norm_f));
        TW_TRY(widen(l->post_attn_norm, &l->post_attn_norm_f));
        TW_TRY(widen(l->ffn_norm, &l->ffn_norm_f));
        TW_TRY(widen(l->post_ffn_norm, &l->post_ffn_norm_f));
    }
    return TW_OK;
}

static tw_status load_vision(loader *L, const char *vt, const char *proj, const char *newline, bool proj_bias) {
    tw_model *m = L->m;
    const tw_siglip_config *v = &m->vision;
    const int64_t C = v->n_embd, F = v->n_ff, P = v->patch_size, G = v->image_size / v->patch_size,
                  H = m->text.n_embd;
    char w_c[64], w_cc[96], w_fc[128], w_cf[128], w_p[160], w_pos[160], w_h[64], w_hc[128], w_hh[96];
    snprintf(w_c, sizeof w_c, "vision hidden_size %lld", (long long)C);
    snprintf(w_cc, sizeof w_cc, "vision hidden_size %lld x %lld", (long long)C, (long long)C);
    snprintf(w_fc, sizeof w_fc, "vision intermediate_size %lld, hidden_size %lld", (long long)F, (long long)C);
    snprintf(w_cf, sizeof w_cf, "vision hidden_size %lld, intermediate_size %lld", (long long)C, (long long)F);
    snprintf(w_p, sizeof w_p, "vision hidden_size %lld, num_channels %d, patch_size %lld", (long long)C,
             v->n_channels, (long long)P);
    snprintf(w_pos, sizeof w_pos, "(image_size %d / patch_size %d)^2 = %lld positions, vision hidden_size %lld",
             v->image_size, v->patch_size, (long long)(G * G), (long long)C);
    snprintf(w_h, sizeof w_h, "text hidden_size %lld", (long long)H);
    snprintf(w_hc, sizeof w_hc, "text hidden_size %lld, vision hidden_size %lld", (long long)H, (long long)C);
    snprintf(w_hh, sizeof w_hh, "text hidden_size %lld x %lld", (long long)H, (long long)H);
    const int64_t dC[1] = { C }, dCC[2] = { C, C }, dFC[2] = { F, C }, dF[1] = { F }, dCF[2] = { C, F },
                  dP[4] = { C, v->n_channels, P, P }, dPos[2] = { G * G, C }, dH[1] = { H }, dHC[2] = { H, C },
                  dHH[2] = { H, H };
    tw_siglip_weights *w = &m->vw;
    const char *vm = "vision_model.";
    TW_TRY(need(L, &w->patch_w, false, w_p, 4, dP, "%s%sembeddings.patch_embedding.weight", vt, vm));
    TW_TRY(need(L, &w->patch_b, false, w_c, 1, dC, "%s%sembeddings.patch_embedding.bias", vt, vm));
    TW_TRY(need(L, &w->pos_embd, false, w_pos, 2, dPos, "%s%sembeddings.position_embedding.weight", vt, vm));
    TW_TRY(need(L, &w->post_ln_w, true, w_c, 1, dC, "%s%spost_layernorm.weight", vt, vm));
    TW_TRY(need(L, &w->post_ln_b, true, w_c, 1, dC, "%s%spost_layernorm.bias", vt, vm));
    w->layers = tw_calloc((size_t)v->n_layer, sizeof *w->layers);
    if (!w->layers) return TW_E_NOMEM;
    for (int i = 0; i < v->n_layer; i++) {
        tw_siglip_layer *l = &w->layers[i];
        const char *e = "encoder.layers.";
        TW_TRY(need(L, &l->ln1_w, false, w_c, 1, dC, "%s%s%s%d.layer_norm1.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->ln1_b, false, w_c, 1, dC, "%s%s%s%d.layer_norm1.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->wq, false, w_cc, 2, dCC, "%s%s%s%d.self_attn.q_proj.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->bq, false, w_c, 1, dC, "%s%s%s%d.self_attn.q_proj.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->wk, false, w_cc, 2, dCC, "%s%s%s%d.self_attn.k_proj.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->bk, false, w_c, 1, dC, "%s%s%s%d.self_attn.k_proj.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->wv, false, w_cc, 2, dCC, "%s%s%s%d.self_attn.v_proj.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->bv, false, w_c, 1, dC, "%s%s%s%d.self_attn.v_proj.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->wo, false, w_cc, 2, dCC, "%s%s%s%d.self_attn.out_proj.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->bo, false, w_c, 1, dC, "%s%s%s%d.self_attn.out_proj.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->ln2_w, false, w_c, 1, dC, "%s%s%s%d.layer_norm2.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->ln2_b, false, w_c, 1, dC, "%s%s%s%d.layer_norm2.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->fc1_w, false, w_fc, 2, dFC, "%s%s%s%d.mlp.fc1.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->fc1_b, false, "vision intermediate_size", 1, dF, "%s%s%s%d.mlp.fc1.bias", vt, vm, e, i));
        TW_TRY(need(L, &l->fc2_w, false, w_cf, 2, dCF, "%s%s%s%d.mlp.fc2.weight", vt, vm, e, i));
        TW_TRY(need(L, &l->fc2_b, false, w_c, 1, dC, "%s%s%s%d.mlp.fc2.bias", vt, vm, e, i));
    }
    tw_projector_weights *p = &m->proj;
    TW_TRY(need(L, &p->w1, false, w_hc, 2, dHC, "%slinear_1.weight", proj));
    TW_TRY(need(L, &p->b1, !proj_bias, w_h, 1, dH, "%slinear_1.bias", proj));
    TW_TRY(need(L, &p->w2, false, w_hh, 2, dHH, "%slinear_2.weight", proj));
    TW_TRY(need(L, &p->b2, !proj_bias, w_h, 1, dH, "%slinear_2.bias", proj));
    TW_TRY(need(L, &m->image_newline, false, w_h, 1, dH, "%s", newline));
    return tw_model_widen_vision(m);
}

/* ---- loading config + weights ------------------------------------------------------------- */

/* config.json and the weights of a source. A directory's weights are opened here, after the
** config is read; a packed file is open already (m->st: its embedded files are the source). */
static tw_status load_main(tw_model *m, const tw_src *src, const tw_model_params *p) {
    /* the kernel path and matmul mode first: a wrong field fails before anything is read */
    if (p) TW_TRY(tw_kernels_configure(p->kernels, p->matmul));
    char *cfg_path = tw_src_name(src, "config.json");
    if (!cfg_path) return TW_E_NOMEM;
    json_t *j = NULL;
    tw_status st = tw_src_json(src, "config.json", &j);
    if (st) {
        free(cfg_path);
        return st;
    }
    const char *file = cfg_path;
    if (!json_is_object(j)) {
        st = tw_err(TW_E_CONFIG, "%s: not a JSON object", file);
        goto done;
    }

    /* Architecture: model_type first, architectures[0] when model_type is absent. */
    const char *mt = NULL, *ar = NULL;
    if ((st = tw_json_str(j, file, "model_type", false, &mt))) goto done;
    const json_t *arj = json_object_get(j, "architectures");
    if (json_is_array(arj)) ar = json_string_value(json_array_get(arj, 0));
    if (mt ? strcmp(mt, "llava_next") == 0 : ar && strcmp(ar, "LlavaNextForConditionalGeneration") == 0)
        m->arch = TW_ARCH_LLAVA_NEXT, m->arch_name = "llava_next";
    else if (mt ? strcmp(mt, "llava_onevision") == 0 : ar && strcmp(ar, "LlavaOnevisionForConditionalGeneration") == 0)
        m->arch = TW_ARCH_LLAVA_ONEVISION, m->arch_name = "llava_onevision";
    else if (mt ? strcmp(mt, "gemma2") == 0 : ar && strcmp(ar, "Gemma2ForCausalLM") == 0)
        m->arch = TW_ARCH_GEMMA2, m->arch_name = "gemma2";
    else {
        st = tw_err(TW_E_UNSUPPORTED, "%s: model_type \"%s\" (architectures \"%s\") is not supported; expected "
                    "llava_next (LlavaNextForConditionalGeneration), llava_onevision "
                    "(LlavaOnevisionForConditionalGeneration) or gemma2 (Gemma2ForCausalLM)", file,
                    mt ? mt : "(absent)", ar ? ar : "(absent)");
        goto done;
    }
    m->has_vision = m->arch != TW_ARCH_GEMMA2;
    m->image_token_id = m->video_token_id = -1;

    if (m->has_vision) {
        const json_t *tc = json_object_get(j, "text_config");
        if (!json_is_object(tc)) {
            st = tw_err(TW_E_CONFIG, "%s: field \"text_config\" is missing or not an object", file);
            goto done;
        }
        const char *tmt = NULL;
        if ((st = tw_json_str(j, file, "text_config.model_type", false, &tmt))) goto done;
        if (tmt && strcmp(tmt, "gemma2") != 0) {
            st = tw_err(TW_E_UNSUPPORTED, "%s: field \"text_config.model_type\" is \"%s\", only \"gemma2\" is "
                        "supported", file, tmt);
            goto done;
        }
        if (!json_is_object(json_object_get(j, "vision_config"))) {
            st = tw_err(TW_E_CONFIG, "%s: field \"vision_config\" is missing or not an object", file);
            goto done;
        }
        if ((st = parse_gemma2(m, j, file, "text_config."))) goto done;
        if ((st = parse_vision(m, j, file))) goto done;
    } else if ((st = parse_gemma2(m, j, file, ""))) goto done;

    /* Final softcap: transformers < 4.52 applied it (as trained), >= 4.52 does not for Llava. */
    int fs = p ? p->final_softcap : -1;
    if (fs == 1 && m->text.final_softcap <= 0) {
        st = tw_err(TW_E_CONFIG, "%s: final_softcap on was requested but the config has no "
                    "\"final_logit_softcapping\"", file);
        goto done;
    }
    m->final_softcap_on = fs < 0 ? m->text.final_softcap > 0 : fs == 1;

    bool proj_bias = true;
    if (m->has_vision && (st = tw_json_bool(j, file, "multimodal_projector_bias", false, &proj_bias))) goto done;

    /* Weights. */
    if (!m->st && (st = tw_st_open_dir(m->dir, &m->st))) goto done;
    if ((st = tw_quant_apply(m->st))) goto done;   /* quantized files: U8 blobs -> Q8_0 / Q4_0 */
    char *wfile = src->packed ? tw_strdup(m->dir) : tw_path_join(m->dir, "model.safetensors.index.json");
    if (!wfile) {
        st = TW_E_NOMEM;
        goto done;
    }
    if (!src->packed && !tw_file_exists(wfile)) {
        free(wfile);
        wfile = tw_path_join(m->dir, "model.safetensors");
        if (!wfile) {
            st = TW_E_NOMEM;
            goto done;
        }
    }
    loader L = { m, wfile };
    if (!m->has_vision) {
        st = load_text(&L, "model.", "lm_head.weight", NULL);
    } else if (tw_st_get(m->st, "model.language_model.embed_tokens.weight")) {
        st = load_text(&L, "model.language_model.", "lm_head.weight", "language_model.lm_head.weight");
        if (!st) st = load_vision(&L, "model.vision_tower.", "model.multi_modal_projector.", "model.image_newline",
                                  proj_bias);
    } else if (tw_st_get(m->st, "language_model.model.embed_tokens.weight")) {
        st = load_text(&L, "language_model.model.", "language_model.lm_head.weight", "lm_head.weight");
        if (!st) st = load_vision(&L, "vision_tower.", "multi_modal_projector.", "image_newline", proj_bias);
    } else {
        st = tw_err(TW_E_WEIGHTS, "%s: no text embedding: neither tensor \"model.language_model.embed_tokens.weight\" "
                    "(transformers >= 4.52 layout) nor \"language_model.model.embed_tokens.weight\" (legacy layout)",
                    wfile);
    }
    free(wfile);
    if (st) goto done;
    /* the processors' settings are validated here, with everything else, not at the first image */
    if (m->has_vision && (st = tw_preproc_load_src(src, m->vision.image_size, m->vision.patch_size, &m->preproc)))
        goto done;
    if (m->video_token_id >= 0 && (st = tw_video_preproc_load_src(src, &m->video_preproc))) goto done;

    m->pool = tw_pool_new(p ? p->n_threads : 0);
    if (!m->pool) st = tw_err(TW_E_NOMEM, "could not start the thread pool");
done:
    json_decref(j);
    free(cfg_path);
    return st;
}

tw_status tw_model_load_dir(const char *dir, const tw_model_params *p, tw_model **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_model_load_dir: out is NULL");
    *out = NULL;
    if (!dir) return tw_err(TW_E_ARG, "tw_model_load_dir: dir is NULL");
    if (!tw_dir_exists(dir)) return tw_err(TW_E_NOT_FOUND, "%s: not a directory", dir);
    tw_model *m = tw_calloc(1, sizeof *m);
    if (!m) return TW_E_NOMEM;
    m->dir = tw_strdup(dir);
    tw_src src = tw_src_dir(m->dir);
    tw_status st = m->dir ? load_main(m, &src, p) : TW_E_NOMEM;
    if (st) {
        tw_model_free(m);
        return st;
    }
    *out = m;
    return TW_OK;
}

void tw_model_free(tw_model *m) {
    if (!m) return;
    if (m->tw.layers)
        for (int i = 0; i < m->text.n_layer; i++) {
            tw_gemma2_layer *l = &m->tw.layers[i];
            free(l->attn_norm_f);
            free(l->post_attn_norm_f);
            free(l->ffn_norm_f);
            free(l->post_ffn_norm_f);
        }
    free(m->tw.layers);
    free(m->tw.norm_f);
    free(m->text.layer_sliding);
    if (m->vw.layers)
        for (int i = 0; i < m->vision.n_layer; i++) {
            tw_siglip_layer *l = &m->vw.layers[i];
            free(l->ln1_w_f), free(l->ln1_b_f), free(l->ln2_w_f), free(l->ln2_b_f);
            free(l->bq_f), free(l->bk_f), free(l->bv_f), free(l->bo_f), free(l->fc1_b_f), free(l->fc2_b_f);
        }
    free(m->vw.layers);
    free(m->vw.patch_b_f);
    free(m->vw.pos_embd_f);
    free(m->proj.b1_f);
    free(m->proj.b2_f);
    free(m->image_newline_f);
    free(m->vision_feature_select_strategy);
    free(m->pinpoints);
    if (m->tmpl) tw_template_free(m->tmpl);
    if (m->tok) tw_tokenizer_free(m->tok);
    free(m->bos_token);
    free(m->eos_token);
    if (m->pool) tw_pool_free(m->pool);
    tw_st_close(m->st);
    for (size_t i = 0; i < m->n_owned; i++) {
        free((void *)m->owned[i]->data);
        free(m->owned[i]);
    }
    free(m->owned);
    free(m->dir);
    free(m);
}

/* ---- full load: hub, tokenizer, template, stop ids ----------------------------------------- */

tw_status tw_model_resolve(const char *name, const tw_model_params *params, char **dir) {
    if (!name || !dir) return tw_err(TW_E_ARG, "tw_model_resolve: name and dir are required");
    *dir = NULL;
    tw_hub_opts o = {0};
    tw_model_params p = params ? *params : tw_model_default_params();
    o.offline = p.offline;   /* tw_hub_resolve reads HF_HUB_OFFLINE itself (1/true/yes/on) */
    o.progress = p.progress;
    o.progress_user_data = p.progress_user_data;
    return tw_hub_resolve(name, &o, dir);
}

/* A token string from tokenizer_config.json: "<bos>" or {"content": "<bos>", ...}. */
static tw_status special_token(const json_t *tc, const char *file, const char *key, const char *def, char **out) {
    const json_t *v = tc ? json_object_get(tc, key) : NULL;
    const char *s = def;
    if (json_is_string(v)) s = json_string_value(v);
    else if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        s = json_string_value(json_object_get(v, "content"));
    else if (v && !json_is_null(v))
        return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be a string or {\"content\": ...}", file, key);
    *out = tw_strdup(s);
    return *out ? TW_OK : TW_E_NOMEM;
}

static tw_status add_stop(tw_model *m, const char *file, const char *key, json_int_t id) {
    if (id < 0 || id >= m->text.n_vocab)
        return tw_err(TW_E_CONFIG, "%s: field \"%s\": token id %lld is outside the vocabulary (%d)", file, key,
                      (long long)id, m->text.n_vocab);
    for (size_t i = 0; i < m->n_stop_ids; i++)
        if (m->stop_ids[i] == id) return TW_OK;
    if (m->n_stop_ids == sizeof m->stop_ids / sizeof m->stop_ids[0])
        return tw_err(TW_E_UNSUPPORTED, "%s: field \"%s\": more than %zu stop ids", file, key,
                      sizeof m->stop_ids / sizeof m->stop_ids[0]);
    m->stop_ids[m->n_stop_ids++] = (int32_t)id;
    return TW_OK;
}

/* eos_token_id: an int or a list of ints. */
static tw_status stops_from(tw_model *m, const json_t *j, const char *file, const char *key) {
    const json_t *v = tw_json_path(j, key);
    if (!v || json_is_null(v)) return TW_OK;
    if (json_is_integer(v)) return add_stop(m, file, key, json_integer_value(v));
    if (!json_is_array(v)) return tw_err(TW_E_CONFIG, "%s: field \"%s\" must be an integer or a list", file, key);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        if (!json_is_integer(e))
            return tw_err(TW_E_CONFIG, "%s: field \"%s\"[%zu] is not an integer", file, key, i);
        TW_TRY(add_stop(m, file, key, json_integer_value(e)));
    }
    return TW_OK;
}

static tw_status load_stops(tw_model *m, const tw_src *src) {
    tw_status st = TW_OK;
    if (tw_src_exists(src, "generation_config.json")) {
        char *gname = tw_src_name(src, "generation_config.json");
        json_t *g = NULL;
        st = gname ? tw_src_json(src, "generation_config.json", &g) : TW_E_NOMEM;
        if (!st) st = stops_from(m, g, gname, "eos_token_id");
        json_decref(g);
        free(gname);
    }
    if (st || m->n_stop_ids) return st;
    /* No generation config: the tokenizer's eos string, then config.json's eos_token_id. */
    int32_t id = m->tok && m->eos_token ? tw_token_id(m->tok, m->eos_token, strlen(m->eos_token)) : -1;
    if (id >= 0) return add_stop(m, "tokenizer_config.json", "eos_token", id);
    char *cname = tw_src_name(src, "config.json");
    if (!cname) return TW_E_NOMEM;
    json_t *c = NULL;
    st = tw_src_json(src, "config.json", &c);
    if (!st) st = stops_from(m, c, cname, m->has_vision ? "text_config.eos_token_id" : "eos_token_id");
    if (!st && !m->n_stop_ids && m->has_vision) st = stops_from(m, c, cname, "eos_token_id");
    json_decref(c);
    free(cname);
    return st;
}

/* Template source: the override file, chat_template.jinja, or tokenizer_config.json's
** "chat_template" (a string, or a list of {name, template} from which "default" is taken). */
static tw_status load_template(tw_model *m, const tw_model_params *p, const tw_src *src, const json_t *tc,
                               const char *tc_path) {
    char *src_text = NULL, *from = NULL;
    size_t len = 0;
    tw_status st = TW_OK;
    if (p && p->chat_template_file) {
        from = tw_strdup(p->chat_template_file);
        st = from ? tw_read_file(from, &src_text, &len) : TW_E_NOMEM;
    } else if (tw_src_exists(src, "chat_template.jinja")) {
        from = tw_src_name(src, "chat_template.jinja");
        st = from ? tw_src_read(src, "chat_template.jinja", &src_text, &len) : TW_E_NOMEM;
    } else if (tc) {
        const json_t *ct = json_object_get(tc, "chat_template");
        const char *s = NULL;
        if (json_is_string(ct)) s = json_string_value(ct);
        else if (json_is_array(ct)) {
            for (size_t i = 0; i < json_array_size(ct); i++) {
                const json_t *e = json_array_get(ct, i);
                const char *nm = json_string_value(json_object_get(e, "name"));
                if (nm && strcmp(nm, "default") == 0) s = json_string_value(json_object_get(e, "template"));
            }
        } else if (ct && !json_is_null(ct))
            st = tw_err(TW_E_CONFIG, "%s: field \"chat_template\" must be a string or a list of {name, template}",
                        tc_path);
        if (s) {
            len = strlen(s);
            src_text = tw_strndup(s, len);
            from = tw_asprintf("%s (chat_template)", tc_path);
            if (!src_text || !from) st = TW_E_NOMEM;
        }
    }
    if (!st && src_text) {
        st = tw_template_new(src_text, len, &m->tmpl);
        if (st) st = tw_err_prefix(st, "chat template %s", from);
    }
    free(src_text);
    free(from);
    return st;
}

/* The tokenizer of a source; model and which ("the checkpoint", "tokenizer_dir") for the message. */
static tw_status load_tokenizer(const char *model, const tw_src *src, const char *which, tw_tokenizer **tok) {
    if (tw_src_exists(src, "tokenizer.json")) return tw_tokenizer_load_src(src, tok);
    char *tok_path = tw_src_name(src, "tokenizer.json");
    if (!tok_path) return TW_E_NOMEM;
    tw_status st = tw_err(TW_E_NOT_FOUND, "%s: %s has no tokenizer.json (looked for %s)", model, which, tok_path);
    free(tok_path);
    return st;
}

/* Tokenizer (unless m has one already), special-token strings, template and stop ids of a
** source. */
static tw_status load_rest(tw_model *m, const tw_src *src, const tw_model_params *p) {
    char *tc_path = tw_src_name(src, "tokenizer_config.json");
    json_t *tc = NULL;
    tw_status st = TW_OK;
    if (!tc_path) st = TW_E_NOMEM;
    else if (!m->tok) st = load_tokenizer(m->dir, src, p && p->tokenizer_dir ? "tokenizer_dir" : "the checkpoint", &m->tok);
    if (!st && tw_tokenizer_vocab_size(m->tok) > m->text.n_vocab)
        st = tw_err(TW_E_CONFIG, "%s: the tokenizer has %d ids but the model's vocabulary only %d", m->dir,
                    (int)tw_tokenizer_vocab_size(m->tok), (int)m->text.n_vocab);
    if (!st && tw_src_exists(src, "tokenizer_config.json")) st = tw_src_json(src, "tokenizer_config.json", &tc);
    if (!st) st = special_token(tc, tc_path, "bos_token", "<bos>", &m->bos_token);
    if (!st) st = special_token(tc, tc_path, "eos_token", "<eos>", &m->eos_token);
    if (!st) st = load_template(m, p, src, tc, tc_path);
    if (!st) st = load_stops(m, src);
    json_decref(tc);
    free(tc_path);
    return st;
}

tw_status tw_model_load_rest(tw_model *m, const char *dir, const tw_model_params *p) {
    tw_src src = tw_src_dir(dir);
    return load_rest(m, &src, p);
}

tw_status tw_model_load_checkpoint(const char *name, const tw_model_params *params, tw_model **out) {
    if (!out) return tw_err(TW_E_ARG, "tw_model_load: out is NULL");
    *out = NULL;
    tw_model *m = NULL;
    tw_status st;
    /* tokenizer_dir, when given, replaces the checkpoint's tokenizer files */
    const char *tdir = params && params->tokenizer_dir && *params->tokenizer_dir ? params->tokenizer_dir : NULL;
    if (tdir && !tw_dir_exists(tdir)) return tw_err(TW_E_NOT_FOUND, "tokenizer_dir %s is not a directory", tdir);
    if (name && tw_quant_is_packed(name)) {
        /* A single-file checkpoint (`tower quantize` output): the weights and the embedded
        ** config / tokenizer / template files are all read from its one mapping. */
        if (!(m = tw_calloc(1, sizeof *m)) || !(m->dir = tw_strdup(name))) {
            free(m);
            return TW_E_NOMEM;
        }
        tw_src src = { 0 };
        st = tw_st_open_file(m->dir, &m->st);
        if (!st) st = tw_quant_src(m->st, m->dir, &src);
        if (!st) st = load_main(m, &src, params);
        if (!st) {
            tw_src tsrc = tdir ? tw_src_dir(tdir) : src;
            st = load_rest(m, &tsrc, params);
        }
        tw_src_free(&src);
    } else {
        char *dir = NULL;
        TW_TRY(tw_model_resolve(name, params, &dir));
        st = tw_model_load_dir(dir, params, &m);
        free(dir);
        if (!st) {
            tw_src src = tw_src_dir(tdir ? tdir : m->dir);
            st = load_rest(m, &src, params);
        }
    }
    if (st) {
        tw_model_free(m);
        return st;
    }
    *out = m;
    return TW_OK;
}

/* ---- accessors ----------------------------------------------------------------------------- */

const tw_tokenizer *tw_model_tokenizer(const tw_model *m) { return m ? m->tok : NULL; }
const char *tw_model_dir(const tw_model *m) { return m ? m->dir : NULL; }
const char *tw_model_arch(const tw_model *m) { return m ? m->arch_name : NULL; }
int32_t tw_model_n_vocab(const tw_model *m) { return m ? m->text.n_vocab : 0; }
int32_t tw_model_n_embd(const tw_model *m) { return m ? m->text.n_embd : 0; }
int32_t tw_model_n_layer(const tw_model *m) { return m ? m->text.n_layer : 0; }
int32_t tw_model_n_ctx_train(const tw_model *m) { return m ? m->text.n_ctx_train : 0; }
int32_t tw_model_image_token(const tw_model *m) { return m && m->has_vision ? m->image_token_id : -1; }
int32_t tw_model_video_token(const tw_model *m) { return m && m->has_vision ? m->video_token_id : -1; }

size_t tw_model_stop_ids(const tw_model *m, const int32_t **ids) {
    if (ids) *ids = m ? m->stop_ids : NULL;
    return m ? m->n_stop_ids : 0;
}

tw_status tw_chat_render(const tw_model *m, const tw_message *msgs, size_t n_msgs, int add_generation_prompt,
                         char **out) {
    if (!m || !out) return tw_err(TW_E_ARG, "tw_chat_render: model and out are required");
    *out = NULL;
    if (!m->tmpl)
        return tw_err(TW_E_TEMPLATE, "%s: the checkpoint has no chat template (no chat_template.jinja, no "
                      "\"chat_template\" in tokenizer_config.json); pass --chat-template FILE", m->dir);
    return tw_template_render(m->tmpl, msgs, n_msgs, add_generation_prompt, m->bos_token ? m->bos_token : "<bos>",
                              m->eos_token ? m->eos_token : "<eos>", out);
}

/* ---- sharing the model's threads (pool.c: sharing) ---- */

void tw_model_claim(const tw_model *m) {
    if (m) tw_pool_claim(m->pool);
}

void tw_model_release(const tw_model *m) {
    if (m) tw_pool_release(m->pool);
}

void tw_thread_set_background(int on) { tw_pool_set_background(on != 0); }
