/*
** test_random_model.c — tw_model_load("random:SHAPE[:TYPE]") through the public API: random
** weights of a preset's shapes with a real tokenizer, chat template and stop ids taken from
** tw_model_params.tokenizer_dir. The "tiny" preset (a few layers of small widths) with the
** fixtures' TowerVision tokenizer loads, tokenizes, renders a chat, generates with and without an
** image and frees everything (the sanitized build checks for leaks); a tokenizer without <image>
** gives a text-only model; the quantized types load; every bad name or missing tokenizer fails
** with a message that says what is accepted. What a random model generates is noise: only the
** plumbing is checked.
*/
#include "tower.h"
#include "testhelp.h"

#include <stdint.h>

/* Loads name with tokenizer_dir (NULL: none); the status, and the model in *m on success. */
static tw_status load(const char *name, const char *tokenizer_dir, tw_model **m) {
    tw_model_params p = tw_model_default_params();
    p.n_threads = 2;
    p.tokenizer_dir = tokenizer_dir;
    return tw_model_load(name, &p, m);
}

/* Greedy generation of n tokens after a one-turn chat prompt (with an image when im is given;
** flags: TW_PROMPT_RAW for a model without a chat template). */
static void generate(tw_model *m, const tw_image *im, int32_t n, unsigned flags, const char *what) {
    tw_media media = { .kind = TW_MEDIA_IMAGE, .image = im };
    tw_prompt *p = NULL;
    const char *q = "<bos>Describe this in one sentence.";
    if (!(flags & TW_PROMPT_RAW)) q += 5;
    CHECK_OK(tw_prompt_from_text(m, NULL, q, strlen(q), im ? &media : NULL, im ? 1 : 0, flags, &p), what);
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 2048, &s), what);
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = n;
    gp.ignore_model_stops = 1;
    tw_gen_result r = { 0 };
    if (p && s) {
        CHECK_OK(tw_prompt_generate(s, p, NULL, &gp, NULL, NULL, &r, NULL), what);
        CHECK(r.n_ids == (size_t)n, "%s: %zu tokens generated, expected %d", what, r.n_ids, (int)n);
        for (size_t i = 0; i < r.n_ids; i++)
            CHECK(r.ids[i] >= 0 && r.ids[i] < tw_model_n_vocab(m), "%s: token %zu is %d", what, i, (int)r.ids[i]);
        if (im) {
            const int32_t *ids = tw_prompt_tokens(p);
            size_t n_img = 0;
            for (size_t i = 0; i < tw_prompt_n_tokens(p); i++) n_img += ids[i] == tw_model_image_token(m);
            CHECK(n_img > 0, "%s: the prompt holds image tokens", what);
        }
    }
    tw_gen_result_free(&r);
    tw_seq_free(s);
    tw_prompt_free(p);
}

/* A failing load: the status, and a message that contains want. */
static void load_fails(const char *name, const char *tokenizer_dir, tw_status want_st, const char *want) {
    tw_model *m = NULL;
    tw_status st = load(name, tokenizer_dir, &m);
    CHECK(st == want_st && !m, "%s: %s, expected %s", name, tw_status_name(st), tw_status_name(want_st));
    CHECK(strstr(tw_last_error(), want) != NULL, "%s: message \"%s\" should contain \"%s\"", name, tw_last_error(), want);
    tw_model_free(m);
}

int main(void) {
    char tv[1024], tok_only[1024];
    snprintf(tv, sizeof tv, "%s", th_path("tiny-towervision"));   /* TowerVision's tokenizer: <image> = 256000 */
    snprintf(tok_only, sizeof tok_only, "%s", th_path("tokenizer"));   /* Gemma2's: 256000 ids, no <image> */

    /* ---- the tiny shapes with TowerVision's tokenizer and template ---- */
    tw_model *m = NULL;
    CHECK_OK(load("random:tiny", tv, &m), "random:tiny loads");
    if (m) {
        CHECK(strcmp(tw_model_dir(m), "random:tiny") == 0, "the model is named as given: %s", tw_model_dir(m));
        CHECK(strcmp(tw_model_arch(m), "llava_next") == 0, "arch %s", tw_model_arch(m));
        CHECK(tw_model_n_vocab(m) == 256001, "vocabulary = the tokenizer's 256001 ids, got %d", (int)tw_model_n_vocab(m));
        CHECK(tw_model_n_layer(m) == 3 && tw_model_n_embd(m) == 64, "tiny shapes: %d layers, hidden %d",
              (int)tw_model_n_layer(m), (int)tw_model_n_embd(m));
        CHECK(tw_model_has_vision(m) && tw_model_image_token(m) == 256000, "images, placeholder <image> = %d",
              (int)tw_model_image_token(m));
        const int32_t *stops = NULL;
        size_t n_stops = tw_model_stop_ids(m, &stops);
        CHECK(n_stops == 2 && stops[0] == 1 && stops[1] == 107, "stop ids from generation_config.json: <eos>, <end_of_turn>");

        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(tw_tokenize(tw_model_tokenizer(m), "Hello world", 11, 1, &ids, &n), "tokenize");
        CHECK(n == 3 && ids && ids[0] == 2, "\"Hello world\" -> <bos> + 2 tokens, got %zu", n);
        tw_free(ids);

        tw_message msg = { "user", "Hi" };
        char *chat = NULL;
        CHECK_OK(tw_chat_render(m, &msg, 1, 1, &chat), "chat template from the tokenizer directory");
        CHECK(chat && strcmp(chat, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n") == 0,
              "rendered: %s", chat ? chat : "(null)");
        tw_free(chat);

        generate(m, NULL, 6, 0, "random:tiny, text");
        uint8_t rgb[40 * 30 * 3];
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37 + 11);
        tw_image *im = NULL;
        CHECK_OK(tw_image_from_rgb(rgb, 40, 30, &im), "image");
        if (im) generate(m, im, 4, 0, "random:tiny, image");
        tw_image_free(im);
        tw_model_free(m);
    }

    /* ---- quantized weights ---- */
    const char *types[] = { "random:tiny:q8", "random:tiny:q4_0" };
    for (int i = 0; i < 2; i++) {
        m = NULL;
        CHECK_OK(load(types[i], tv, &m), types[i]);
        if (m) generate(m, NULL, 3, 0, types[i]);
        tw_model_free(m);
    }

    /* ---- a tokenizer without <image>: text only, the vocabulary follows the tokenizer ---- */
    m = NULL;
    CHECK_OK(load("random:tiny", tok_only, &m), "random:tiny with Gemma2's tokenizer");
    if (m) {
        CHECK(!tw_model_has_vision(m) && tw_model_image_token(m) == -1, "no <image> in the tokenizer: text only");
        CHECK(tw_model_n_vocab(m) == 256000, "vocabulary 256000, got %d", (int)tw_model_n_vocab(m));
        generate(m, NULL, 3, TW_PROMPT_RAW, "random:tiny, Gemma2 tokenizer (no chat template)");
        tw_model_free(m);
    }

    /* ---- tokenizer_dir also overrides a checkpoint's tokenizer files ---- */
    m = NULL;
    CHECK_OK(load(tv, tok_only, &m), "a checkpoint with tokenizer_dir");
    if (m) {
        CHECK(tw_tokenizer_vocab_size(tw_model_tokenizer(m)) == 256000, "the tokenizer is tokenizer_dir's");
        tw_model_free(m);
    }

    /* ---- errors that say what is accepted ---- */
    load_fails("random:tiny", NULL, TW_E_ARG, "tokenizer_dir");
    load_fails("random:7b", tv, TW_E_ARG, "random:2b, random:9b or random:tiny");
    load_fails("random:", tv, TW_E_ARG, "unknown shapes");
    load_fails("random:tiny:q5", tv, TW_E_ARG, "unknown weight type \"q5\"");
    load_fails("random:tiny", th_path("expected"), TW_E_NOT_FOUND, "no tokenizer.json");
    load_fails(tv, "/nonexistent-tokenizer-dir", TW_E_NOT_FOUND, "not a directory");
    return th_report();
}
