/*
** model_random.c — TowerVision models with random weights, built in memory.
**
** `tower bench` measures the engine on the exact shapes of the released checkpoints without
** downloading 5-18 GB, and tw_model_load("random:2b", ...) serves them (model.c attaches a real
** tokenizer and chat template): this file fills every field tw_model_load_dir would (model.c),
** with weight tensors of the checkpoint's shapes and type whose data are uniform random numbers
** instead of a file mapping. The forward code cannot tell the difference; only the numbers it
** computes are meaningless.
**
** Memory: the model owns its tensors (tw_model.owned, each struct malloc'ed and its data
** aligned_alloc'ed), so tw_model_free releases them with the rest. With spec->n_distinct > 0
** only that many text layers get their own weights and layer i uses set i % n_distinct: the 9B
** in BF16 (18.5 GB) would not fit next to its KV cache on a 24 GB machine, while 4 distinct sets
** (~400 MB each, far above any L3) are streamed from memory exactly like 42 distinct ones.
*/
#include "model_random.h"
#include "quant.h"   /* Q8_0 / Q4_0 rows (and qfile.h: their sizes and names) */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- presets ------------------------------------------------------------------------------------ */

/* TowerVision's image_grid_pinpoints in tiles (rows, cols), in the checkpoint's order (SPEC 1.4). */
static const int8_t pinpoint_tiles[14][2] = {
    { 1, 1 }, { 1, 2 }, { 2, 1 }, { 1, 3 }, { 3, 1 }, { 1, 4 }, { 2, 2 },
    { 4, 1 }, { 1, 5 }, { 5, 1 }, { 1, 6 }, { 2, 3 }, { 3, 2 }, { 6, 1 },
};

bool tw_random_spec_preset(const char *name, tw_random_spec *out) {
    tw_random_spec s = { 0 };
    tw_gemma2_config *t = &s.text;
    tw_siglip_config *v = &s.vision;
    /* Gemma2 fields common to both sizes (SPEC 1.5) */
    t->n_vocab = 256001, t->head_dim = 256, t->n_ctx_train = 8192, t->sliding_window = 4096;
    t->rms_eps = 1e-6f, t->rope_theta = 10000.0f, t->query_pre_attn_scalar = 256;
    t->attn_softcap = 50.0f, t->final_softcap = 30.0f, t->tie_embeddings = true;
    /* SigLIP so400m/14@384 with the last layer removed (SPEC 1.6) */
    *v = (tw_siglip_config){ .n_embd = 1152, .n_ff = 4304, .n_layer = 26, .n_head = 16, .image_size = 384,
                             .patch_size = 14, .n_channels = 3, .ln_eps = 1e-6f };
    s.has_vision = true;
    s.type = TW_DT_BF16;
    s.seed = 0x70e4u;
    if (strcmp(name, "2b") == 0) {
        s.name = "TowerVision-2B";
        t->n_embd = 2304, t->n_ff = 9216, t->n_layer = 26, t->n_head = 8, t->n_head_kv = 4;
    } else if (strcmp(name, "9b") == 0) {
        s.name = "TowerVision-9B";
        t->n_embd = 3584, t->n_ff = 14336, t->n_layer = 42, t->n_head = 16, t->n_head_kv = 8;
    } else if (strcmp(name, "tiny") == 0) {
        s.name = "tiny";
        t->n_vocab = 512, t->n_embd = 64, t->n_ff = 128, t->n_layer = 3, t->n_head = 4, t->n_head_kv = 2;
        t->head_dim = 16, t->sliding_window = 64, t->query_pre_attn_scalar = 16;
        *v = (tw_siglip_config){ .n_embd = 32, .n_ff = 64, .n_layer = 2, .n_head = 4, .image_size = 28,
                                 .patch_size = 14, .n_channels = 3, .ln_eps = 1e-6f };
    } else {
        return false;
    }
    s.n_pinpoints = 14;
    for (int i = 0; i < 14; i++) {
        s.pinpoints[i][0] = pinpoint_tiles[i][0] * v->image_size;
        s.pinpoints[i][1] = pinpoint_tiles[i][1] * v->image_size;
    }
    *out = s;
    return true;
}

/* ---- model names: "random:SHAPE[:TYPE]" ------------------------------------------------------------- */

#define RANDOM_PREFIX "random:"

bool tw_random_name(const char *name) { return name && strncmp(name, RANDOM_PREFIX, strlen(RANDOM_PREFIX)) == 0; }

tw_status tw_random_spec_parse(const char *name, tw_random_spec *out) {
    if (!tw_random_name(name)) return tw_err(TW_E_ARG, "\"%s\" does not name random weights (random:SHAPE[:TYPE])", name);
    const char *shape = name + strlen(RANDOM_PREFIX), *colon = strchr(shape, ':');
    char buf[16];
    size_t n = colon ? (size_t)(colon - shape) : strlen(shape);
    snprintf(buf, sizeof buf, "%.*s", (int)TW_MIN(n, sizeof buf - 1), shape);
    if (n >= sizeof buf || !tw_random_spec_preset(buf, out))
        return tw_err(TW_E_ARG, "model \"%s\": unknown shapes \"%.*s\"; random weights are random:2b, random:9b or "
                      "random:tiny, optionally followed by :bf16, :f16, :f32, :q8 or :q4", name, (int)n, shape);
    if (colon && !tw_random_type_parse(colon + 1, &out->type))
        return tw_err(TW_E_ARG, "model \"%s\": unknown weight type \"%s\"; expected bf16 (the default), f16, f32, "
                      "q8 (q8_0) or q4 (q4_0)", name, colon + 1);
    return TW_OK;
}

/* ---- the build ------------------------------------------------------------------------------- */

typedef struct rand_build {
    tw_model *m;              /* being built; its owned list grows here     */
    size_t    cap;            /* of m->owned                                 */
    uint64_t  seed;
    tw_pool  *pool;           /* for filling: the model's own pool           */
} rand_build;

/* ---- random fill ---------------------------------------------------------------------------------- */

typedef struct fill_job {
    void    *data;
    tw_dtype type;
    int64_t  n, chunk;
    float    scale;           /* values uniform in [-scale, scale] */
    uint64_t seed;
} fill_job;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One chunk, its own generator seeded by the chunk index: the result does not depend on which
** thread fills which chunk. */
static void fill_task(void *ctx, int64_t i, int tid) {
    TW_UNUSED(tid);
    const fill_job *j = ctx;
    int64_t lo = i * j->chunk, hi = TW_MIN(j->n, lo + j->chunk);
    uint64_t st = j->seed ^ ((uint64_t)i * 0x2545f4914f6cdd1dull);
    uint64_t x = splitmix64(&st) | 1;
    const float k = j->scale / 2147483648.0f;
    for (int64_t e = lo; e < hi; e++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;   /* xorshift64* */
        float f = (float)(int32_t)((x * 0x2545f4914f6cdd1dull) >> 32) * k;
        switch (j->type) {
        case TW_DT_BF16: ((uint16_t *)j->data)[e] = tw_f32_to_bf16(f); break;
        case TW_DT_F16:  ((uint16_t *)j->data)[e] = tw_f32_to_f16(f); break;
        default:         ((float *)j->data)[e] = f; break;
        }
    }
}

/* Quantized matrices: random f32 rows (each row its own generator), quantized with the quant
** module's reference quantizer, as `tower quantize` would store them. */
typedef struct qfill_job {
    uint8_t *data;
    tw_dtype type;
    int64_t  N, K, rows;      /* rows per task */
    size_t   row_bytes;
    float    scale;
    uint64_t seed;
} qfill_job;

static void qfill_task(void *ctx, int64_t i, int tid) {
    TW_UNUSED(tid);
    const qfill_job *j = ctx;
    float *x = malloc(sizeof(float) * (size_t)j->K);
    if (!x) return;   /* the row stays as allocated: the benchmark's timing does not depend on values */
    for (int64_t r = i * j->rows; r < TW_MIN(j->N, (i + 1) * j->rows); r++) {
        fill_job f = { x, TW_DT_F32, j->K, j->K, j->scale, j->seed ^ ((uint64_t)r * 0x9e3779b97f4a7c15ull) };
        fill_task(&f, 0, 0);
        tw_quantize_row(j->type, x, j->K, j->data + (size_t)r * j->row_bytes);
    }
    free(x);
}

/* Is t stored as `type` or, for types that only make sense for matrices (quantized blocks), in
** BF16 as `tower quantize` keeps vectors, convolutions and position embeddings? */
static tw_dtype stored_type(tw_dtype type, int ndim, const char *name) {
    if (tw_dtype_is_quant(type) && (ndim != 2 || strstr(name, "position_embedding"))) return TW_DT_BF16;
    return type;
}

/* A new tensor of the model's weight type, filled, owned by the model. name: a static string
** (messages only). */
static tw_status new_tensor(rand_build *r, tw_dtype type, const char *name, float scale, const tw_tensor **out,
                            int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    tw_model *m = r->m;
    if (m->n_owned == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        tw_tensor **t = tw_realloc(m->owned, cap * sizeof *t);
        if (!t) return TW_E_NOMEM;
        m->owned = t, r->cap = cap;
    }
    tw_tensor *t = tw_calloc(1, sizeof *t);
    if (!t) return TW_E_NOMEM;
    const int64_t d[4] = { d0, d1, d2, d3 };
    type = stored_type(type, ndim, name);
    t->name = name, t->type = type, t->ndim = ndim, t->file = "(random weights)";
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (t->shape[i] = d[i]);
    const bool quant = tw_dtype_is_quant(type);
    t->nbytes = quant ? (size_t)d0 * tw_quant_row_bytes(type, d1) : (size_t)n * tw_dtype_size(type);
    /* aligned_alloc needs a size that is a multiple of the alignment */
    void *data = aligned_alloc(64, (t->nbytes + 63) & ~(size_t)63);
    if (!data) {
        size_t mb = t->nbytes >> 20;
        free(t);
        return tw_err(TW_E_NOMEM, "random weights: cannot allocate %zu MB for %s", mb, name);
    }
    t->data = data;
    m->owned[m->n_owned++] = t;
    uint64_t seed = r->seed + 0x9e37u * m->n_owned;
    if (!quant) {
        fill_job j = { data, type, n, 1 << 18, scale, seed };
        tw_pool_run(r->pool, (n + j.chunk - 1) / j.chunk, fill_task, &j);
    } else {
        qfill_job j = { data, type, d0, d1, 64, tw_quant_row_bytes(type, d1), scale, seed };
        tw_pool_run(r->pool, (d0 + j.rows - 1) / j.rows, qfill_task, &j);
    }
    *out = t;
    return TW_OK;
}

static tw_status widen(const tw_tensor *t, float **out) {
    *out = tw_malloc((size_t)tw_tensor_nelem(t) * sizeof(float));
    if (!*out) return TW_E_NOMEM;
    tw_tensor_to_f32(t, *out);
    return TW_OK;
}

bool tw_random_type_ok(tw_dtype t) {
    return tw_dtype_is_quant(t) || t == TW_DT_BF16 || t == TW_DT_F16 || t == TW_DT_F32;
}

bool tw_random_type_parse(const char *name, tw_dtype *t) {
    if (strcmp(name, "bf16") == 0) return *t = TW_DT_BF16, true;
    if (strcmp(name, "f16") == 0) return *t = TW_DT_F16, true;
    if (strcmp(name, "f32") == 0) return *t = TW_DT_F32, true;
    return tw_quant_parse(name, t);
}

/* ---- building ------------------------------------------------------------------------------------- */

static float fan_in(int64_t k) { return sqrtf(3.0f / (float)k); }   /* unit variance out for unit in */

static tw_status build_text(rand_build *r, const tw_random_spec *sp) {
    tw_model *m = r->m;
    const tw_gemma2_config *c = &m->text;
    const tw_dtype ty = sp->type;
    const int64_t H = c->n_embd, F = c->n_ff, V = c->n_vocab, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_head_kv * c->head_dim;
    tw_gemma2_weights *w = &m->tw;
    /* the embedding is scaled by sqrt(H) in the forward: unit-variance rows after the scale */
    TW_TRY(new_tensor(r, ty, "embed_tokens.weight (tied lm_head)", fan_in(H), &w->embed, 2, V, H, 0, 0));
    w->lm_head = w->embed;
    TW_TRY(new_tensor(r, ty, "norm.weight", 0.1f, &w->norm, 1, H, 0, 0, 0));
    TW_TRY(widen(w->norm, &w->norm_f));
    w->layers = tw_calloc((size_t)c->n_layer, sizeof *w->layers);
    if (!w->layers) return TW_E_NOMEM;
    int32_t nd = sp->n_distinct > 0 ? TW_MIN(sp->n_distinct, c->n_layer) : c->n_layer;
    for (int32_t i = 0; i < c->n_layer; i++) {
        tw_gemma2_layer *l = &w->layers[i];
        if (i >= nd) {   /* a cycled layer: the weights of layer i % nd, its own widened norms */
            *l = w->layers[i % nd];
        } else {
            TW_TRY(new_tensor(r, ty, "input_layernorm.weight", 0.1f, &l->attn_norm, 1, H, 0, 0, 0));
            TW_TRY(new_tensor(r, ty, "q_proj.weight", fan_in(H), &l->wq, 2, qd, H, 0, 0));
            TW_TRY(new_tensor(r, ty, "k_proj.weight", fan_in(H), &l->wk, 2, kvd, H, 0, 0));
            TW_TRY(new_tensor(r, ty, "v_proj.weight", fan_in(H), &l->wv, 2, kvd, H, 0, 0));
            TW_TRY(new_tensor(r, ty, "o_proj.weight", fan_in(qd), &l->wo, 2, H, qd, 0, 0));
            TW_TRY(new_tensor(r, ty, "post_attention_layernorm.weight", 0.1f, &l->post_attn_norm, 1, H, 0, 0, 0));
            TW_TRY(new_tensor(r, ty, "pre_feedforward_layernorm.weight", 0.1f, &l->ffn_norm, 1, H, 0, 0, 0));
            TW_TRY(new_tensor(r, ty, "gate_proj.weight", fan_in(H), &l->w_gate, 2, F, H, 0, 0));
            TW_TRY(new_tensor(r, ty, "up_proj.weight", fan_in(H), &l->w_up, 2, F, H, 0, 0));
            TW_TRY(new_tensor(r, ty, "down_proj.weight", fan_in(F), &l->w_down, 2, H, F, 0, 0));
            TW_TRY(new_tensor(r, ty, "post_feedforward_layernorm.weight", 0.1f, &l->post_ffn_norm, 1, H, 0, 0, 0));
        }
        /* tw_model_free frees these per layer, so every layer has its own copies */
        TW_TRY(widen(l->attn_norm, &l->attn_norm_f));
        TW_TRY(widen(l->post_attn_norm, &l->post_attn_norm_f));
        TW_TRY(widen(l->ffn_norm, &l->ffn_norm_f));
        TW_TRY(widen(l->post_ffn_norm, &l->post_ffn_norm_f));
    }
    return TW_OK;
}

static tw_status build_vision(rand_build *r, const tw_random_spec *sp) {
    tw_model *m = r->m;
    const tw_siglip_config *v = &m->vision;
    const tw_dtype ty = sp->type;
    const int64_t C = v->n_embd, F = v->n_ff, P = v->patch_size, G = v->image_size / v->patch_size,
                  H = m->text.n_embd, K = (int64_t)v->n_channels * P * P;
    const float b = 0.02f;   /* biases and position embeddings */
    tw_siglip_weights *w = &m->vw;
    TW_TRY(new_tensor(r, ty, "patch_embedding.weight", fan_in(K), &w->patch_w, 4, C, v->n_channels, P, P));
    TW_TRY(new_tensor(r, ty, "patch_embedding.bias", b, &w->patch_b, 1, C, 0, 0, 0));
    TW_TRY(new_tensor(r, ty, "position_embedding.weight", b, &w->pos_embd, 2, G * G, C, 0, 0));
    TW_TRY(new_tensor(r, ty, "post_layernorm.weight", 0.1f, &w->post_ln_w, 1, C, 0, 0, 0));
    TW_TRY(new_tensor(r, ty, "post_layernorm.bias", b, &w->post_ln_b, 1, C, 0, 0, 0));
    w->layers = tw_calloc((size_t)v->n_layer, sizeof *w->layers);
    if (!w->layers) return TW_E_NOMEM;
    for (int32_t i = 0; i < v->n_layer; i++) {
        tw_siglip_layer *l = &w->layers[i];
        /* LayerNorm weights near 1 (w * x_hat + b), not near 0 as Gemma's (1 + w) */
        TW_TRY(new_tensor(r, ty, "layer_norm1.weight", 1.0f, &l->ln1_w, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "layer_norm1.bias", b, &l->ln1_b, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "q_proj.weight", fan_in(C), &l->wq, 2, C, C, 0, 0));
        TW_TRY(new_tensor(r, ty, "q_proj.bias", b, &l->bq, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "k_proj.weight", fan_in(C), &l->wk, 2, C, C, 0, 0));
        TW_TRY(new_tensor(r, ty, "k_proj.bias", b, &l->bk, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "v_proj.weight", fan_in(C), &l->wv, 2, C, C, 0, 0));
        TW_TRY(new_tensor(r, ty, "v_proj.bias", b, &l->bv, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "out_proj.weight", fan_in(C), &l->wo, 2, C, C, 0, 0));
        TW_TRY(new_tensor(r, ty, "out_proj.bias", b, &l->bo, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "layer_norm2.weight", 1.0f, &l->ln2_w, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "layer_norm2.bias", b, &l->ln2_b, 1, C, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "fc1.weight", fan_in(C), &l->fc1_w, 2, F, C, 0, 0));
        TW_TRY(new_tensor(r, ty, "fc1.bias", b, &l->fc1_b, 1, F, 0, 0, 0));
        TW_TRY(new_tensor(r, ty, "fc2.weight", fan_in(F), &l->fc2_w, 2, C, F, 0, 0));
        TW_TRY(new_tensor(r, ty, "fc2.bias", b, &l->fc2_b, 1, C, 0, 0, 0));
    }
    tw_projector_weights *p = &m->proj;
    TW_TRY(new_tensor(r, ty, "linear_1.weight", fan_in(C), &p->w1, 2, H, C, 0, 0));
    TW_TRY(new_tensor(r, ty, "linear_1.bias", b, &p->b1, 1, H, 0, 0, 0));
    TW_TRY(new_tensor(r, ty, "linear_2.weight", fan_in(H), &p->w2, 2, H, H, 0, 0));
    TW_TRY(new_tensor(r, ty, "linear_2.bias", b, &p->b2, 1, H, 0, 0, 0));
    TW_TRY(new_tensor(r, ty, "image_newline", fan_in(H), &m->image_newline, 1, H, 0, 0, 0));
    return tw_model_widen_vision(m);   /* the f32 copies siglip.c reads, as model.c makes them */
}

static tw_status build(rand_build *r, const tw_random_spec *sp) {
    tw_model *m = r->m;
    m->dir = tw_asprintf("(random %s)", sp->name ? sp->name : "model");
    if (!m->dir) return TW_E_NOMEM;
    m->arch = sp->has_vision ? TW_ARCH_LLAVA_NEXT : TW_ARCH_GEMMA2;
    m->arch_name = sp->has_vision ? "llava_next" : "gemma2";
    m->text = sp->text;
    m->text.layer_sliding = NULL;   /* ours is built below */
    const tw_gemma2_config *c = &m->text;
    if (c->n_embd <= 0 || c->n_ff <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 ||
        c->n_head % c->n_head_kv || c->head_dim <= 0 || c->head_dim % 2 || c->n_vocab <= 0)
        return tw_err(TW_E_CONFIG, "random model %s: inconsistent text config", m->dir);
    if (!tw_random_type_ok(sp->type))
        return tw_err(TW_E_UNSUPPORTED, "random model %s: weight type %s: only F32, F16, BF16, Q8_0 and Q4_0 can be "
                      "filled", m->dir, tw_dtype_name(sp->type));
    /* even layer indices slide (Gemma2's layer_types; model.c's default without them) */
    m->text.layer_sliding = tw_calloc((size_t)c->n_layer, 1);
    if (!m->text.layer_sliding) return TW_E_NOMEM;
    for (int32_t i = 0; i < c->n_layer; i++) m->text.layer_sliding[i] = c->sliding_window > 0 && i % 2 == 0;
    m->text.tie_embeddings = true;
    m->final_softcap_on = c->final_softcap > 0;   /* load_dir's default: as config.json says */
    m->image_token_id = m->video_token_id = -1;
    m->stop_ids[0] = TW_MIN(107, c->n_vocab - 1);   /* <end_of_turn> */
    m->n_stop_ids = 1;

    m->pool = r->pool = tw_pool_new(sp->n_threads);
    if (!m->pool) return tw_err(TW_E_NOMEM, "could not start the thread pool");
    TW_TRY(build_text(r, sp));
    if (!sp->has_vision) return TW_OK;

    m->has_vision = true;
    m->vision = sp->vision;
    const tw_siglip_config *v = &m->vision;
    if (v->n_embd <= 0 || v->n_head <= 0 || v->n_embd % v->n_head || v->patch_size <= 0 ||
        v->image_size < v->patch_size || v->n_layer <= 0 || v->n_channels != 3)
        return tw_err(TW_E_CONFIG, "random model %s: inconsistent vision config", m->dir);
    m->vision_feature_layer = -1;   /* with 26 layers: the output of the last one (SPEC 1.2) */
    m->vision_feature_select_strategy = tw_strdup("full");
    if (!m->vision_feature_select_strategy) return TW_E_NOMEM;
    m->image_token_id = c->n_vocab - 1;   /* 256000 in the released vocab of 256001 */
    /* no preprocessor_config.json for a random model: the SigLIP defaults tw_preproc_load gives */
    TW_TRY(tw_preproc_load(m->dir, v->image_size, v->patch_size, &m->preproc));
    if (sp->n_pinpoints <= 0 || sp->n_pinpoints > 32)
        return tw_err(TW_E_CONFIG, "random model %s: %d pinpoints", m->dir, (int)sp->n_pinpoints);
    m->pinpoints = tw_calloc((size_t)sp->n_pinpoints * 2, sizeof *m->pinpoints);
    if (!m->pinpoints) return TW_E_NOMEM;
    memcpy(m->pinpoints, sp->pinpoints, sizeof(int32_t) * 2 * (size_t)sp->n_pinpoints);
    m->n_pinpoints = sp->n_pinpoints;
    m->max_num_patches = 0;
    return build_vision(r, sp);
}

tw_status tw_random_model_new(const tw_random_spec *spec, tw_model **out) {
    if (!spec || !out) return tw_err(TW_E_ARG, "tw_random_model_new: NULL argument");
    *out = NULL;
    rand_build r = { .m = tw_calloc(1, sizeof(tw_model)), .seed = spec->seed };
    if (!r.m) return TW_E_NOMEM;
    tw_status st = build(&r, spec);
    if (st != TW_OK) {
        tw_model_free(r.m);
        return st;
    }
    *out = r.m;
    return TW_OK;
}

uint64_t tw_random_model_bytes(const tw_model *m) {
    uint64_t b = 0;
    for (size_t i = 0; m && i < m->n_owned; i++) b += m->owned[i]->nbytes;
    return b;
}

/* ---- loading by name: tw_model_load("random:2b", ...) ------------------------------------------- */

tw_status tw_random_model_load(const char *name, const tw_model_params *p, tw_model **out) {
    *out = NULL;
    tw_random_spec sp;
    TW_TRY(tw_random_spec_parse(name, &sp));
    const char *dir = p ? p->tokenizer_dir : NULL;
    if (!dir || !*dir)
        return tw_err(TW_E_ARG, "%s: random weights come without a tokenizer: give a directory with tokenizer.json "
                      "(and a chat template), e.g. a TowerVision checkpoint's, in tw_model_params.tokenizer_dir "
                      "(tower: --tokenizer DIR)", name);
    TW_TRY(tw_kernels_configure(p->kernels, p->matmul));   /* before anything is built, as for a checkpoint */
    tw_src src = tw_src_dir(dir);
    if (!tw_src_exists(&src, "tokenizer.json"))
        return tw_err(TW_E_NOT_FOUND, "%s: tokenizer_dir %s has no tokenizer.json", name, dir);
    tw_tokenizer *tok = NULL;
    TW_TRY(tw_tokenizer_load_src(&src, &tok));
    int32_t image_id = tw_token_id(tok, "<image>", 7);
    sp.text.n_vocab = tw_tokenizer_vocab_size(tok);
    sp.has_vision = sp.has_vision && image_id >= 0;
    sp.n_threads = p->n_threads;
    tw_model *m = NULL;
    tw_status st = tw_random_model_new(&sp, &m);
    if (st) {
        tw_tokenizer_free(tok);
        return st;
    }
    m->tok = tok;
    if (m->has_vision) m->image_token_id = image_id;
    if (p->final_softcap >= 0) m->final_softcap_on = p->final_softcap == 1;   /* -1: on, as config.json's 30 */
    m->n_stop_ids = 0;   /* the tokenizer directory's generation_config.json decides, as a checkpoint's */
    free(m->dir);
    m->dir = tw_strdup(name);
    st = m->dir ? tw_model_load_rest(m, dir, p) : TW_E_NOMEM;
    if (st) {
        tw_model_free(m);
        return st;
    }
    *out = m;
    return TW_OK;
}
