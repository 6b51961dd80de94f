/*
** test_model_load.c — checkpoint loading: the tiny fixtures load with the right config values,
** every layout / sharding / dtype variant of tests/ckpt_variants.h loads and points at equal
** weights, and every corruption fails with the right status and a message naming the file and
** the field or tensor.
*/
#include "model.h"
#include "testhelp.h"
#include "ckpt_variants.h"

static void test_tiny_vision(void) {
    tw_model *m = NULL;
    tw_model_params p = tw_model_default_params();
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &m), "load tiny-towervision");
    if (!m) return;
    CHECK(m->arch == TW_ARCH_LLAVA_NEXT && strcmp(tw_model_arch(m), "llava_next") == 0, "arch");
    const tw_gemma2_config *c = &m->text;
    CHECK(c->n_vocab == 256001 && c->n_embd == 64 && c->n_ff == 128 && c->n_layer == 4, "text sizes");
    CHECK(c->n_head == 4 && c->n_head_kv == 2 && c->head_dim == 16, "heads");
    CHECK(c->query_pre_attn_scalar == 32 && c->sliding_window == 8, "qpas / window");
    CHECK(c->attn_softcap == 50 && c->final_softcap == 30 && m->final_softcap_on, "softcaps");
    CHECK(c->rms_eps == 1e-6f && c->rope_theta == 10000 && c->n_ctx_train == 8192, "eps/theta/ctx");
    CHECK(c->layer_sliding[0] == 1 && c->layer_sliding[1] == 0 && c->layer_sliding[2] == 1 && c->layer_sliding[3] == 0,
          "sliding pattern");
    CHECK(c->tie_embeddings && m->tw.lm_head == m->tw.embed, "tied head");
    CHECK(m->has_vision && m->vision.n_embd == 32 && m->vision.n_layer == 3 && m->vision.n_head == 2 &&
          m->vision.n_ff == 64 && m->vision.image_size == 60 && m->vision.patch_size == 14, "vision config");
    CHECK(m->image_token_id == 256000 && m->video_token_id == -1 && tw_model_image_token(m) == 256000, "image token");
    CHECK(m->vision_feature_layer == -1 && strcmp(m->vision_feature_select_strategy, "full") == 0, "features");
    CHECK(m->n_pinpoints == 14 && m->pinpoints[2] == 60 && m->pinpoints[3] == 120, "pinpoints");
    CHECK(m->proj.b1 && m->proj.b2 && m->image_newline && m->vw.post_ln_w, "projector / newline");
    CHECK(m->tw.layers[3].wq->type == TW_DT_BF16 && m->tw.layers[3].wq->shape[0] == 64, "wq");
    CHECK(m->tw.norm_f && m->tw.layers[0].attn_norm_f, "widened norms");
    if (m->tw.norm_f) {
        float w0 = tw_bf16_to_f32(*(const uint16_t *)m->tw.norm->data);
        CHECK(m->tw.norm_f[0] == w0, "norm widened value");
    }
    tw_model_free(m);

    p.final_softcap = 0;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), &p, &m), "load softcap off");
    if (m) CHECK(!m->final_softcap_on, "softcap off");
    tw_model_free(m);
}

static void test_tiny_video(void) {
    tw_model *m = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervideo"), NULL, &m), "load tiny-towervideo");
    if (!m) return;
    CHECK(m->arch == TW_ARCH_LLAVA_ONEVISION, "arch");
    CHECK(m->text.n_vocab == 256002 && m->video_token_id == 256001 && m->image_token_id == 256000, "tokens");
    CHECK(m->vision.image_size == 74 && m->vw.pos_embd->shape[0] == 25, "vision 74");
    CHECK(m->n_pinpoints == 36, "pinpoints");
    tw_model_free(m);
}

/* Same values, whatever dtype each side stores. */
static int same_tensor(const tw_tensor *a, const tw_tensor *b) {
    if (!a || !b) return a == b;
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    int64_t n = tw_tensor_nelem(a);
    for (int64_t i = 0; i < n; i++)
        if (cv_get(a, i) != cv_get(b, i)) return 0;
    return 1;
}

static int same_text(const tw_model *a, const tw_model *b) {
    int ok = same_tensor(a->tw.embed, b->tw.embed) && same_tensor(a->tw.lm_head, b->tw.lm_head) &&
             same_tensor(a->tw.norm, b->tw.norm) && a->text.n_layer == b->text.n_layer;
    for (int i = 0; ok && i < a->text.n_layer; i++) {
        const tw_gemma2_layer *x = &a->tw.layers[i], *y = &b->tw.layers[i];
        ok = same_tensor(x->attn_norm, y->attn_norm) && same_tensor(x->wq, y->wq) && same_tensor(x->wk, y->wk) &&
             same_tensor(x->wv, y->wv) && same_tensor(x->wo, y->wo) && same_tensor(x->post_attn_norm, y->post_attn_norm) &&
             same_tensor(x->ffn_norm, y->ffn_norm) && same_tensor(x->w_gate, y->w_gate) && same_tensor(x->w_up, y->w_up) &&
             same_tensor(x->w_down, y->w_down) && same_tensor(x->post_ffn_norm, y->post_ffn_norm) &&
             memcmp(x->attn_norm_f, y->attn_norm_f, (size_t)a->text.n_embd * 4) == 0;
    }
    return ok;
}

static int same_vision(const tw_model *a, const tw_model *b) {
    int ok = same_tensor(a->vw.patch_w, b->vw.patch_w) && same_tensor(a->vw.patch_b, b->vw.patch_b) &&
             same_tensor(a->vw.pos_embd, b->vw.pos_embd) && same_tensor(a->vw.post_ln_w, b->vw.post_ln_w) &&
             same_tensor(a->proj.w1, b->proj.w1) && same_tensor(a->proj.b1, b->proj.b1) &&
             same_tensor(a->proj.w2, b->proj.w2) && same_tensor(a->proj.b2, b->proj.b2) &&
             same_tensor(a->image_newline, b->image_newline);
    for (int i = 0; ok && i < a->vision.n_layer; i++) {
        const tw_siglip_layer *x = &a->vw.layers[i], *y = &b->vw.layers[i];
        ok = same_tensor(x->ln1_w, y->ln1_w) && same_tensor(x->ln1_b, y->ln1_b) && same_tensor(x->wq, y->wq) &&
             same_tensor(x->bq, y->bq) && same_tensor(x->wk, y->wk) && same_tensor(x->bk, y->bk) &&
             same_tensor(x->wv, y->wv) && same_tensor(x->bv, y->bv) && same_tensor(x->wo, y->wo) &&
             same_tensor(x->bo, y->bo) && same_tensor(x->ln2_w, y->ln2_w) && same_tensor(x->ln2_b, y->ln2_b) &&
             same_tensor(x->fc1_w, y->fc1_w) && same_tensor(x->fc1_b, y->fc1_b) && same_tensor(x->fc2_w, y->fc2_w) &&
             same_tensor(x->fc2_b, y->fc2_b);
    }
    return ok;
}

static void test_variants(void) {
    tw_model *ref = NULL;
    CHECK_OK(tw_model_load_dir(th_path("tiny-towervision"), NULL, &ref), "reference");
    if (!ref) return;
    struct { const char *what; cv_opts o; } v[8];
    for (int i = 0; i < 8; i++) v[i].o = cv_default();
    v[0].what = "legacy names";        v[0].o.legacy = 1;
    v[1].what = "3 shards";            v[1].o.n_shards = 3;
    v[2].what = "F32";                 v[2].o.dtype = CV_F32;
    v[3].what = "F16 where exact";     v[3].o.dtype = CV_F16;
    v[4].what = "mixed dtypes";        v[4].o.dtype = CV_MIX;
    v[5].what = "untied head";         v[5].o.untie = 1;
    v[6].what = "legacy+shards+mix+untied"; v[6].o.legacy = 1; v[6].o.n_shards = 4; v[6].o.dtype = CV_MIX; v[6].o.untie = 1;
    v[7].what = "text-only";           v[7].o.text_only = 1;
    for (int i = 0; i < 8; i++) {
        char *dir = cv_make(th_path("tiny-towervision"), &v[i].o);
        CHECK(dir != NULL, "%s: variant written", v[i].what);
        if (!dir) continue;
        tw_model *m = NULL;
        CHECK_OK(tw_model_load_dir(dir, NULL, &m), v[i].what);
        if (m) {
            CHECK(same_text(ref, m), "%s: text weights equal", v[i].what);
            if (v[i].o.text_only) {
                CHECK(m->arch == TW_ARCH_GEMMA2 && !m->has_vision && tw_model_image_token(m) == -1, "%s: arch", v[i].what);
                CHECK(m->text.n_embd == 64 && m->text.query_pre_attn_scalar == 32 && m->final_softcap_on, "%s: config", v[i].what);
            } else {
                CHECK(same_vision(ref, m), "%s: vision weights equal", v[i].what);
            }
            CHECK(m->text.tie_embeddings == !v[i].o.untie, "%s: tie flag", v[i].what);
            CHECK((m->tw.lm_head == m->tw.embed) == !v[i].o.untie, "%s: head pointer", v[i].what);
            if (v[i].o.dtype == CV_F32) CHECK(m->tw.layers[0].wq->type == TW_DT_F32, "%s: stored f32", v[i].what);
            if (v[i].o.dtype == CV_MIX) {
                int seen[TW_DT_COUNT] = {0};
                for (size_t k = 0; k < tw_st_count(m->st); k++) seen[tw_st_at(m->st, k)->type] = 1;
                CHECK(seen[TW_DT_F32] && seen[TW_DT_F16] && seen[TW_DT_BF16], "%s: all three dtypes", v[i].what);
            }
        }
        tw_model_free(m);
        cv_remove(dir);
    }
    tw_model_free(ref);
}

/* Loads a corrupted variant and checks status + that the message names the file and what. */
static void expect_fail(const char *what, const cv_opts *o, tw_status want, const char *file, const char *needle) {
    char *dir = cv_make(th_path("tiny-towervision"), o);
    CHECK(dir != NULL, "%s: variant written", what);
    if (!dir) return;
    tw_model *m = NULL;
    tw_status st = tw_model_load_dir(dir, NULL, &m);
    const char *msg = tw_last_error();
    CHECK(st == want, "%s: status %s, expected %s (%s)", what, tw_status_name(st), tw_status_name(want), msg);
    CHECK(strstr(msg, file) != NULL, "%s: message names %s: %s", what, file, msg);
    CHECK(strstr(msg, needle) != NULL, "%s: message names %s: %s", what, needle, msg);
    CHECK(m == NULL, "%s: no model", what);
    tw_model_free(m);
    cv_remove(dir);
}

static void test_corruptions(void) {
    cv_opts o = cv_default();
    o.drop = "model.language_model.layers.2.mlp.up_proj.weight";
    expect_fail("dropped tensor", &o, TW_E_WEIGHTS, "model.safetensors", o.drop);
    o = cv_default();
    o.drop = "model.vision_tower.vision_model.encoder.layers.1.self_attn.k_proj.bias";
    expect_fail("dropped vision tensor", &o, TW_E_WEIGHTS, "model.safetensors", o.drop);
    o = cv_default();
    o.legacy = 1;
    o.n_shards = 2;
    o.drop = "image_newline";
    expect_fail("dropped newline, sharded", &o, TW_E_WEIGHTS, "model.safetensors.index.json", "\"image_newline\"");
    o = cv_default();
    o.reshape = "model.language_model.layers.3.self_attn.q_proj.weight";
    expect_fail("wrong shape", &o, TW_E_WEIGHTS, "model.safetensors", "shape [1, 4096], expected [64, 64] (num_attention_heads 4 x head_dim 16");
    o = cv_default();
    o.reshape = "model.language_model.layers.1.mlp.down_proj.weight";
    expect_fail("wrong shape down", &o, TW_E_WEIGHTS, "model.safetensors",
                "shape [128, 64], expected [64, 128] (hidden_size 64, intermediate_size 128)");
    o = cv_default();
    o.set_key = "text_config.hidden_size";
    o.set_json = "32";
    expect_fail("hidden_size changed", &o, TW_E_WEIGHTS, "model.safetensors",
                "\"model.language_model.embed_tokens.weight\": shape [256001, 64], expected [256001, 32]");
    o = cv_default();
    o.set_key = "text_config.num_attention_heads";
    o.set_json = "2";
    expect_fail("heads changed", &o, TW_E_WEIGHTS, "model.safetensors",
                "q_proj.weight\": shape [64, 64], expected [32, 64] (num_attention_heads 2 x head_dim 16, hidden_size 64)");
    o = cv_default();
    o.del_key = "text_config.intermediate_size";
    expect_fail("missing config field", &o, TW_E_CONFIG, "config.json", "text_config.intermediate_size");
    o = cv_default();
    o.del_key = "vision_config.patch_size";
    expect_fail("missing vision field", &o, TW_E_CONFIG, "config.json", "vision_config.patch_size");
    o = cv_default();
    o.set_key = "model_type";
    o.set_json = "\"llama\"";
    expect_fail("unknown model_type", &o, TW_E_UNSUPPORTED, "config.json", "llama");
    o = cv_default();
    o.set_key = "text_config.hidden_activation";
    o.set_json = "\"relu\"";
    expect_fail("unsupported activation", &o, TW_E_UNSUPPORTED, "config.json", "text_config.hidden_activation");
    o = cv_default();
    o.set_key = "vision_feature_layer";
    o.set_json = "-5";
    expect_fail("feature layer out of range", &o, TW_E_CONFIG, "config.json", "vision_feature_layer");
    o = cv_default();
    o.set_key = "text_config.layer_types";
    o.set_json = "[\"sliding_attention\", \"full_attention\"]";
    expect_fail("layer_types length", &o, TW_E_CONFIG, "config.json", "layer_types");
    o = cv_default();
    o.bad_json = 1;
    expect_fail("malformed config", &o, TW_E_FORMAT, "config.json", "invalid JSON");
    o = cv_default();
    o.truncate = 1;
    expect_fail("truncated weights", &o, TW_E_FORMAT, "model.safetensors", "truncated");
    o = cv_default();
    o.n_shards = 3;
    o.truncate = 1;
    expect_fail("truncated shard", &o, TW_E_FORMAT, "model-00001-of-00003.safetensors", "tensor \"");
}

static void test_config_details(void) {
    /* layer_types overrides the even/odd rule; final softcap forced on without one is an error */
    cv_opts o = cv_default();
    o.set_key = "text_config.layer_types";
    o.set_json = "[\"full_attention\", \"sliding_attention\", \"sliding_attention\", \"full_attention\"]";
    char *dir = cv_make(th_path("tiny-towervision"), &o);
    tw_model *m = NULL;
    CHECK_OK(tw_model_load_dir(dir, NULL, &m), "layer_types");
    if (m) CHECK(!m->text.layer_sliding[0] && m->text.layer_sliding[1] && m->text.layer_sliding[2] &&
                 !m->text.layer_sliding[3], "layer_types read");
    tw_model_free(m);
    cv_remove(dir);

    o = cv_default();
    o.set_key = "text_config.final_logit_softcapping";
    o.set_json = "null";
    dir = cv_make(th_path("tiny-towervision"), &o);
    m = NULL;
    CHECK_OK(tw_model_load_dir(dir, NULL, &m), "no final softcap");
    if (m) CHECK(m->text.final_softcap == 0 && !m->final_softcap_on, "softcap off when null");
    tw_model_free(m);
    m = NULL;
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 1;
    CHECK(tw_model_load_dir(dir, &p, &m) == TW_E_CONFIG && strstr(tw_last_error(), "final_logit_softcapping"),
          "softcap forced on without config: %s", tw_last_error());
    tw_model_free(m);
    cv_remove(dir);

    o = cv_default();
    o.del_key = "text_config.head_dim";
    o.set_key = "vision_feature_layer";
    o.set_json = "2";
    dir = cv_make(th_path("tiny-towervision"), &o);
    m = NULL;
    CHECK_OK(tw_model_load_dir(dir, NULL, &m), "head_dim default, positive feature layer");
    if (m) CHECK(m->text.head_dim == 16 && m->vision_feature_layer == 2, "defaults");
    tw_model_free(m);
    cv_remove(dir);
}

/* Writes tokenizer_config.json of dir with "chat_template" set to v (a JSON value). */
static void set_tc_template(const char *dir, json_t *v) {
    char *p = tw_path_join(dir, "tokenizer_config.json");
    json_t *j = NULL;
    CHECK_OK(tw_json_load(p, &j), "tokenizer_config");
    if (j) {
        json_object_set_new(j, "chat_template", v);
        char *txt = json_dumps(j, 0);
        CHECK_OK(tw_write_file_atomic(p, txt, strlen(txt)), "write tokenizer_config");
        free(txt);
        json_decref(j);
    } else json_decref(v);
    free(p);
}

static void test_full_load(void) {
    static const char *want = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n";
    tw_message msg = { "user", " Hi\n" };
    tw_model *m = NULL;
    tw_model_params p = tw_model_default_params();
    p.offline = 1;
    p.n_threads = 2;
    CHECK_OK(tw_model_load(th_path("tiny-towervision"), &p, &m), "tw_model_load tiny-towervision");
    if (m) {
        const int32_t *ids = NULL;
        size_t n = tw_model_stop_ids(m, &ids);
        CHECK(n == 2 && ids[0] == 1 && ids[1] == 107, "stop ids from generation_config (%zu)", n);
        CHECK(tw_model_tokenizer(m) && tw_tokenizer_vocab_size(tw_model_tokenizer(m)) == 256001, "tokenizer");
        CHECK(strcmp(tw_model_dir(m), th_path("tiny-towervision")) == 0, "dir");
        CHECK(tw_model_n_vocab(m) == 256001 && tw_model_n_embd(m) == 64 && tw_model_n_layer(m) == 4 &&
              tw_model_n_ctx_train(m) == 8192, "accessors");
        char *out = NULL;
        CHECK_OK(tw_chat_render(m, &msg, 1, 1, &out), "render");
        CHECK(out && strcmp(out, want) == 0, "rendered: %s", out ? out : "(null)");
        tw_free(out);
    }
    tw_model_free(m);
    m = NULL;
    CHECK_OK(tw_model_load(th_path("tiny-towervideo"), &p, &m), "tw_model_load tiny-towervideo");
    if (m) CHECK(strcmp(tw_model_arch(m), "llava_onevision") == 0, "video arch");
    tw_model_free(m);

    /* missing tokenizer.json: a clear NOT_FOUND naming the directory and the file */
    cv_opts o = cv_default();
    o.no_tokenizer = 1;
    char *dir = cv_make(th_path("tiny-towervision"), &o);
    m = NULL;
    tw_status st = tw_model_load(dir, &p, &m);
    CHECK(st == TW_E_NOT_FOUND && strstr(tw_last_error(), dir) && strstr(tw_last_error(), "tokenizer.json") && !m,
          "missing tokenizer: %s: %s", tw_status_name(st), tw_last_error());
    cv_remove(dir);

    /* no template anywhere: loads, render says how to fix it; no generation_config: <eos> stops */
    o = cv_default();
    o.omit[0] = "chat_template.jinja";
    o.omit[1] = "generation_config.json";
    dir = cv_make(th_path("tiny-towervision"), &o);
    m = NULL;
    CHECK_OK(tw_model_load(dir, &p, &m), "no template");
    if (m) {
        char *out = NULL;
        CHECK(tw_chat_render(m, &msg, 1, 1, &out) == TW_E_TEMPLATE && !out &&
              strstr(tw_last_error(), "--chat-template"), "no template message: %s", tw_last_error());
        const int32_t *ids = NULL;
        CHECK(tw_model_stop_ids(m, &ids) == 1 && ids[0] == 1, "stop = <eos> from the tokenizer");
    }
    tw_model_free(m);

    /* template from tokenizer_config.json: a string, then a list with "default" */
    set_tc_template(dir, json_string("{{ bos_token }}X{{ eos_token }}"));
    m = NULL;
    CHECK_OK(tw_model_load(dir, &p, &m), "template string");
    if (m) {
        char *out = NULL;
        CHECK_OK(tw_chat_render(m, &msg, 1, 0, &out), "render string template");
        CHECK(out && strcmp(out, "<bos>X<eos>") == 0, "string template: %s", out ? out : "");
        tw_free(out);
    }
    tw_model_free(m);
    set_tc_template(dir, json_pack("[{s:s,s:s},{s:s,s:s}]", "name", "tool_use", "template", "T",
                                   "name", "default", "template", "D"));
    m = NULL;
    CHECK_OK(tw_model_load(dir, &p, &m), "template list");
    if (m) {
        char *out = NULL;
        CHECK_OK(tw_chat_render(m, &msg, 1, 0, &out), "render list template");
        CHECK(out && strcmp(out, "D") == 0, "default template: %s", out ? out : "");
        tw_free(out);
    }
    tw_model_free(m);

    /* --chat-template FILE overrides; a syntax error names the file */
    char *tf = tw_path_join(dir, "override.jinja");
    tw_write_file_atomic(tf, "O{{ messages[0].content }}", 26);
    p.chat_template_file = tf;
    m = NULL;
    CHECK_OK(tw_model_load(dir, &p, &m), "override");
    if (m) {
        char *out = NULL;
        CHECK_OK(tw_chat_render(m, &msg, 1, 0, &out), "render override");
        CHECK(out && strcmp(out, "O Hi\n") == 0, "override: %s", out ? out : "");
        tw_free(out);
    }
    tw_model_free(m);
    tw_write_file_atomic(tf, "{% if %}", 8);
    m = NULL;
    st = tw_model_load(dir, &p, &m);
    CHECK(st == TW_E_TEMPLATE && strstr(tw_last_error(), tf) && !m, "bad template: %s: %s", tw_status_name(st),
          tw_last_error());
    free(tf);
    cv_remove(dir);
}

int main(void) {
    test_tiny_vision();
    test_tiny_video();
    test_variants();
    test_corruptions();
    test_config_details();
    test_full_load();
    return th_report();
}
