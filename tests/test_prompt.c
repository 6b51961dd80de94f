/*
** test_prompt.c — the multimodal prompt API (tw_prompt, tw_media_cache) beyond reference parity
** (test_media_e2e runs every fixture case through it): placement rules and their errors, token
** counts known before encoding, TowerVideo's single tiles for several images, KV-cache reuse
** that follows the media and not only the token ids (logits bit-identical to a fresh sequence),
** the cache's hits and least-recently-used eviction, the named-tensor observer, the context
** check, chunked evaluation (tw_prompt_reuse / encode_from / chunk: the logits of every position
** as tw_prompt_eval's, reuse across chat turns without encoding, errors), and the public
** safetensors reader / writer.
*/
#include "tower.h"
#include "video.h"   /* tw_video_from_rgb: frames made in memory */
#include "testhelp.h"

#include <math.h>
#include <stdbool.h>
#include <unistd.h>

static tw_model *load(const char *name) {
    tw_model_params p = tw_model_default_params();
    p.final_softcap = 0;
    tw_model *m = NULL;
    CHECK_OK(tw_model_load(th_path(name), &p, &m), name);
    return m;
}

/* A w x h image of a smooth pattern; seed changes every pixel. */
static tw_image *pattern(int32_t w, int32_t h, int seed) {
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int32_t i = 0; i < w * h * 3; i++) rgb[i] = (uint8_t)((i * 7 + seed * 31 + (i / (3 * w)) * 3) & 255);
    tw_image *im = NULL;
    CHECK_OK(tw_image_from_rgb(rgb, w, h, &im), "image");
    free(rgb);
    return im;
}

static tw_prompt *text_prompt(tw_model *m, const char *text, const tw_image *im) {
    tw_media md = { TW_MEDIA_IMAGE, im, NULL };
    tw_prompt *p = NULL;
    CHECK_OK(tw_prompt_from_text(m, NULL, text, strlen(text), &md, im ? 1 : 0, 0, &p), text);
    return p;
}

/* Evaluates p on s (reusing what s holds) and on a fresh sequence: the last logits must be the
** same bits (the GEMM is invariant in the number of rows), or, when only the last token is
** evaluated again (the one-row decode kernel instead of the GEMM), within test_gemma2's bound for
** decode against prefill. Returns the reused count. */
static size_t eval_vs_fresh(tw_model *m, tw_seq *s, tw_prompt *p, const char *what) {
    size_t reused = 0;
    CHECK_OK(tw_prompt_eval(s, p, NULL, NULL, &reused), what);
    tw_seq *f = NULL;
    CHECK_OK(tw_seq_new(m, 0, &f), "fresh seq");
    CHECK_OK(tw_prompt_eval(f, p, NULL, NULL, NULL), what);
    size_t V = (size_t)tw_model_n_vocab(m);
    double d = 0;
    for (size_t i = 0; i < V; i++) d = fmax(d, fabs((double)tw_seq_logits(s)[i] - tw_seq_logits(f)[i]));
    double bound = reused + 1 == tw_prompt_n_tokens(p) ? 1e-4 : 0;
    CHECK(d <= bound, "%s: logits after reusing %zu tokens differ from a fresh evaluation by %g (bound %g)", what, reused,
          d, bound);
    CHECK(tw_seq_pos(s) == (int32_t)tw_prompt_n_tokens(p), "%s: sequence holds %d tokens, prompt %zu", what,
          tw_seq_pos(s), tw_prompt_n_tokens(p));
    tw_seq_free(f);
    return reused;
}

/* ---- chunked evaluation (tw_prompt_reuse, tw_prompt_encode_from, tw_prompt_chunk) ------------ */

/* Evaluates p into s the scheduler's way: reuse, encode what follows, then chunks whose sizes
** cycle through sizes[] (a size 0 ends the list). all: NULL, or [n][V] logits of every position
** evaluated (from the reused count on). Returns the reused count; *short_chunk: some chunk was
** short (see bound_for). */
static size_t eval_chunked(tw_model *m, tw_seq *s, tw_prompt *p, tw_media_cache *cache, const size_t *sizes, float *all,
                           bool *short_chunk, const char *what) {
    size_t pos = 0, n = tw_prompt_n_tokens(p), V = (size_t)tw_model_n_vocab(m);
    *short_chunk = false;
    CHECK_OK(tw_prompt_reuse(s, p, &pos), what);
    size_t reused = pos;
    CHECK(tw_seq_pos(s) == (int32_t)pos, "%s: the sequence is rewound to the kept prefix", what);
    CHECK_OK(tw_prompt_encode_from(p, pos, cache, NULL), what);
    for (size_t i = 0; pos < n; i++) {
        if (!sizes[i]) i = 0;
        if (!sizes[i]) break;
        size_t c = sizes[i] < n - pos ? sizes[i] : n - pos;
        const int32_t *ids = NULL;
        tw_eval_opts eo;
        tw_status st = tw_prompt_chunk(p, pos, c, &ids, &eo);
        CHECK(st == TW_OK, "%s: chunk [%zu, %zu): %s", what, pos, pos + c, tw_last_error());
        if (st != TW_OK) break;
        eo.logits = all ? all + (pos - reused) * V : NULL;
        CHECK_OK(tw_seq_eval(s, ids, c, &eo), what);
        *short_chunk |= c <= 8;
        pos += c;
    }
    return reused;
}

static void test_reuse(tw_model *m) {
    tw_image *a = pattern(60, 60, 1), *b = pattern(60, 60, 2);
    tw_prompt *p1 = text_prompt(m, "Describe the image.", a);
    tw_prompt *p2 = text_prompt(m, "Describe the image!", a);   /* same image, other text  */
    tw_prompt *p3 = text_prompt(m, "Describe the image!", b);   /* same size, other pixels */
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    if (!p1 || !p2 || !p3 || !s) goto out;
    tw_prompt_media_info mi;
    CHECK_OK(tw_prompt_media(p1, 0, &mi), "media info");
    size_t first = mi.first_token, n_img = (size_t)mi.n_tokens, n = tw_prompt_n_tokens(p1);
    CHECK(n == tw_prompt_n_tokens(p3) && mi.n_tokens == 36 && !mi.encoded, "counts before encoding: %zu tokens, %d image",
          n, mi.n_tokens);
    CHECK(eval_vs_fresh(m, s, p1, "first") == 0, "nothing to reuse at first");
    size_t r = eval_vs_fresh(m, s, p1, "same again");
    CHECK(r == n - 1, "the same prompt again reuses all but its last token (%zu of %zu)", r, n);
    r = eval_vs_fresh(m, s, p2, "text changed");
    CHECK(r >= first + n_img && r < n - 1, "other text after the image: reuses the image (%zu, image ends at %zu)", r,
          first + n_img);
    /* a new prompt object whose image lies wholly in the kept prefix: that image is not encoded */
    tw_prompt *p4 = text_prompt(m, "Describe the image?", a);
    if (p4) {
        CHECK_OK(tw_prompt_eval(s, p4, NULL, NULL, &r), "p4");
        CHECK_OK(tw_prompt_media(p4, 0, &mi), "p4 media");
        CHECK(!mi.encoded && r >= first + n_img, "an image in the reused prefix is not encoded (reused %zu)", r);
        tw_prompt_free(p4);
    }
    r = eval_vs_fresh(m, s, p3, "image changed");
    CHECK(r == first, "another image with the same token count: reuse stops at its first token (%zu, want %zu)", r, first);
    /* rows given to tw_seq_eval by hand carry no medium's name: a prompt never reuses them */
    const float *rows = NULL;
    size_t n_rows = 0;
    CHECK_OK(tw_prompt_embd(p3, &rows, &n_rows), "rows");
    tw_seq_rewind(s, 0);
    tw_eval_opts eo = { .embd = rows, .n_embd_rows = n_rows };
    CHECK_OK(tw_seq_eval(s, tw_prompt_tokens(p3), n, &eo), "eval by hand");
    r = eval_vs_fresh(m, s, p3, "after a hand eval");
    CHECK(r == first, "rows evaluated by hand are not reused (%zu, want %zu)", r, first);
    /* generation continues a chat: the next turn reuses the previous prompt and reply */
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = 4;
    gp.ignore_model_stops = 1;
    tw_gen_result g = { 0 };
    CHECK_OK(tw_prompt_generate(s, p1, NULL, &gp, NULL, NULL, &g, &r), "generate");
    CHECK(tw_seq_pos(s) == (int32_t)(n + 4) && g.n_ids == 4, "prompt + 4 generated tokens in the cache (%d)",
          tw_seq_pos(s));
    tw_gen_result_free(&g);
out:
    tw_seq_free(s);
    tw_prompt_free(p1), tw_prompt_free(p2), tw_prompt_free(p3);
    tw_image_free(a), tw_image_free(b);
}

static void test_cache(tw_model *m) {
    tw_image *a = pattern(60, 60, 3), *b = pattern(60, 60, 4);
    tw_prompt *pa = text_prompt(m, "x", a), *pb = text_prompt(m, "x", b), *pa2 = text_prompt(m, "y", a);
    size_t one = 36 * (size_t)tw_model_n_embd(m) * sizeof(float);   /* one 60x60 image's rows */
    tw_media_cache *c = NULL;
    CHECK_OK(tw_media_cache_new(m, one, &c), "cache");
    if (!pa || !pb || !pa2 || !c) goto out;
    tw_media_cache_stats st;
    CHECK_OK(tw_prompt_encode(pa, c, NULL), "a");
    CHECK_OK(tw_prompt_encode(pa2, c, NULL), "a again");
    tw_media_cache_get_stats(c, &st);
    CHECK(st.misses == 1 && st.hits == 1 && st.images_encoded == 1 && st.entries == 1 && st.bytes == one,
          "same pixels in another prompt: one encode, one hit (%llu/%llu)", (unsigned long long)st.misses,
          (unsigned long long)st.hits);
    CHECK_OK(tw_prompt_encode(pb, c, NULL), "b");
    tw_media_cache_get_stats(c, &st);
    CHECK(st.entries == 1 && st.misses == 2, "budget of one image: b evicts a (%zu entries)", st.entries);
    tw_prompt_free(pa2);
    pa2 = text_prompt(m, "y", a);
    CHECK_OK(tw_prompt_encode(pa2, c, NULL), "a after eviction");
    tw_media_cache_get_stats(c, &st);
    CHECK(st.misses == 3 && st.images_encoded == 3, "a was evicted: encoded again (%llu misses)",
          (unsigned long long)st.misses);
    /* rows outlive their eviction in the prompts that hold them */
    const float *ra = NULL, *rb = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(tw_prompt_embd(pa, &ra, &na), "a rows");
    CHECK_OK(tw_prompt_embd(pa2, &rb, &nb), "a rows again");
    CHECK(na == nb && memcmp(ra, rb, na * (size_t)tw_model_n_embd(m) * sizeof(float)) == 0,
          "the same image encodes to the same rows");
out:
    tw_media_cache_free(c);
    tw_prompt_free(pa), tw_prompt_free(pb), tw_prompt_free(pa2);
    tw_image_free(a), tw_image_free(b);
}

typedef struct seen {
    char   names[16][40];
    int    n, stop_at;
    size_t packed_bytes;
    float  packed0;
} seen;

static int on_tensor(void *ud, const tw_tensor_info *t) {
    seen *s = ud;
    if (s->n < 16) snprintf(s->names[s->n], sizeof s->names[0], "%s", t->name);
    s->n++;
    if (!strcmp(t->name, "packed")) {
        s->packed_bytes = (size_t)(t->shape[0] * t->shape[1]) * sizeof(float);
        s->packed0 = ((const float *)t->data)[0];
    }
    return s->stop_at && s->n >= s->stop_at;
}

static void test_observer(tw_model *m) {
    tw_image *a = pattern(200, 100, 5);
    tw_prompt *p = text_prompt(m, "x", a);
    if (!p) goto out;
    seen s = { 0 };
    tw_encode_opts eo = { on_tensor, &s };
    CHECK_OK(tw_prompt_encode(p, NULL, &eo), "encode with observer");
    static const char *const want[] = { "pixel_values", "vision_hidden_states", "vision_selected", "projected", "packed" };
    CHECK(s.n == 5, "image: %d tensors named", s.n);
    for (int i = 0; i < 5 && i < s.n; i++) CHECK(!strcmp(s.names[i], want[i]), "tensor %d is %s, want %s", i, s.names[i], want[i]);
    const float *rows = NULL;
    size_t n = 0;
    CHECK_OK(tw_prompt_embd(p, &rows, &n), "rows");
    CHECK(rows && s.packed_bytes == n * (size_t)tw_model_n_embd(m) * sizeof(float) && rows[0] == s.packed0,
          "the observer's packed tensor is the prompt's rows");
    tw_prompt_free(p);
    p = text_prompt(m, "x", a);
    seen stop = { .stop_at = 2 };
    eo.user_data = &stop;
    tw_status st = p ? tw_prompt_encode(p, NULL, &eo) : TW_E_INTERNAL;
    CHECK(st == TW_E_CANCELLED && strstr(tw_last_error(), "vision_hidden_states"),
          "a callback returning non-zero stops the encode: %s %s", tw_status_name(st), tw_last_error());
out:
    tw_prompt_free(p);
    tw_image_free(a);
}

static void expect_fail(tw_status st, tw_status want, const char *pattern, const char *what) {
    CHECK(st == want && strstr(tw_last_error(), pattern), "%s: %s \"%s\" (want %s with \"%s\")", what, tw_status_name(st),
          st == TW_OK ? "" : tw_last_error(), tw_status_name(want), pattern);
}

static void test_errors(tw_model *m, tw_model *ov) {
    tw_image *a = pattern(60, 60, 6);
    tw_media md = { TW_MEDIA_IMAGE, a, NULL };
    tw_prompt *p = NULL;
    const char *two = "<image> and <image>?";
    expect_fail(tw_prompt_from_text(m, NULL, two, strlen(two), &md, 1, 0, &p), TW_E_ARG,
                "2 <image> placeholder(s) but 1 image(s)", "two placeholders, one image");
    expect_fail(tw_prompt_from_text(m, NULL, "<bos>hi", 7, &md, 1, TW_PROMPT_RAW, &p), TW_E_ARG,
                "0 <image> placeholder(s) but 1 image(s)", "raw prompt without its placeholder");
    expect_fail(tw_prompt_from_text(m, NULL, "hi", 2, &md, 1, TW_PROMPT_NO_PREPEND, &p), TW_E_ARG, "placeholder",
                "no prepending asked");
    expect_fail(tw_prompt_from_text(m, NULL, "a\0b", 3, NULL, 0, 0, &p), TW_E_ARG, "NUL", "NUL byte");
    tw_part parts[2] = { { TW_PART_IMAGE, NULL, NULL, NULL }, { TW_PART_TEXT, "x", NULL, NULL } };
    tw_chat_message msg = { "user", parts, 2 };
    expect_fail(tw_prompt_from_chat(m, &msg, 1, 1, &p), TW_E_ARG, "part 1", "image part without an image");
    /* two messages, the second with a stray placeholder: named */
    tw_part p1[1] = { { TW_PART_TEXT, "hello", NULL, NULL } }, p2[2] = { { TW_PART_IMAGE, NULL, a, NULL },
                                                                       { TW_PART_TEXT, "<image><image>", NULL, NULL } };
    tw_chat_message msgs[2] = { { "user", p1, 1 }, { "user", p2, 2 } };
    expect_fail(tw_prompt_from_chat(m, msgs, 2, 1, &p), TW_E_ARG, "message 2: the prompt has 2 <image>",
                "placeholder count named by message");
    /* TowerVision takes no video */
    uint8_t px[4 * 4 * 3] = { 0 };
    tw_video *v = NULL;
    CHECK_OK(tw_video_from_rgb(px, 1, 4, 4, &v), "video");
    tw_media vm = { TW_MEDIA_VIDEO, NULL, v };
    expect_fail(tw_prompt_from_text(m, NULL, "x", 1, &vm, 1, 0, &p), TW_E_ARG, "takes no video", "video on TowerVision");
    tw_video_free(v);
    /* the context: what takes the room */
    p = text_prompt(m, "Describe the image.", a);
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 40, &s), "seq 40");
    if (p && s)
        expect_fail(tw_prompt_eval(s, p, NULL, NULL, NULL), TW_E_CONTEXT, "(36 of them for 1 image(s)) but the context holds 40",
                    "image prompt over the context");
    tw_seq_free(s);
    tw_prompt_free(p);
    p = NULL;
    if (ov) {   /* 8 frames of a 320x240 clip: 73 tokens, 9 per frame */
        uint8_t *fr = calloc(8, 240 * 320 * 3);
        CHECK_OK(tw_video_from_rgb(fr, 8, 240, 320, &v), "frames");
        vm.video = v;
        CHECK_OK(tw_prompt_from_text(ov, NULL, "Hi", 2, &vm, 1, 0, &p), "video prompt");
        CHECK_OK(tw_seq_new(ov, 60, &s), "seq 60");
        if (p && s)
            expect_fail(tw_prompt_generate(s, p, NULL, NULL, NULL, NULL, &(tw_gen_result){ 0 }, NULL), TW_E_CONTEXT,
                        "the video takes 73 (8 frames x 9 + 1); sample fewer frames (5 fit)", "video over the context");
        tw_seq_free(s);
        tw_prompt_free(p);
        tw_video_free(v);
        free(fr);
    }
    tw_image_free(a);
}

/* Largest difference between [n][V] logits. */
static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* How far logits may be from the reference's. 0 when every position was evaluated in chunks of
** more than 8 tokens: the matrix products do not depend on the number of rows, nor attention on
** the number of query rows. A short chunk takes the decode kernels instead (one row: the
** matrix-vector products; up to 8 query rows per KV head: attention, attn.c), which sum in
** another order, and the keys and values it caches carry that on to every later position; then
** test_gemma2's bound for hidden states, 1e-4 max|ref| + 1e-4 (one token at a time over ~100
** positions, text alone, already differs by 2.5e-4 on the tiny model). */
static double bound_for(bool short_chunk, const float *ref, size_t n) {
    double mx = 0;
    for (size_t i = 0; short_chunk && i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
    return short_chunk ? 1e-4 * mx + 1e-4 : 0;
}

/* The last logits of s against a fresh tw_prompt_eval of p: the same bits, unless some position
** of s was evaluated in a short chunk (or is a generated token in a kept prefix). */
static void last_vs_fresh(tw_model *m, tw_seq *s, tw_prompt *p, bool short_chunk, const char *what) {
    tw_seq *f = NULL;
    CHECK_OK(tw_seq_new(m, 0, &f), "fresh seq");
    CHECK_OK(tw_prompt_eval(f, p, NULL, NULL, NULL), what);
    size_t V = (size_t)tw_model_n_vocab(m);
    double d = max_diff(tw_seq_logits(s), tw_seq_logits(f), V), bound = bound_for(short_chunk, tw_seq_logits(f), V);
    CHECK(d <= bound, "%s: last logits differ from a fresh tw_prompt_eval by %g (bound %g)", what, d, bound);
    CHECK(tw_seq_pos(s) == (int32_t)tw_prompt_n_tokens(p), "%s: the sequence holds the prompt", what);
    tw_seq_free(f);
}

static void test_chunks(tw_model *m) {
    tw_image *a = pattern(200, 100, 11), *b = pattern(60, 60, 12);
    tw_media md[2] = { { TW_MEDIA_IMAGE, a, NULL }, { TW_MEDIA_IMAGE, b, NULL } };
    const char *text = "<image> or <image>: which one is wider?";
    tw_prompt *p = NULL;
    CHECK_OK(tw_prompt_from_text(m, NULL, text, strlen(text), md, 2, 0, &p), "two images");
    tw_seq *s = NULL;
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    size_t n = p ? tw_prompt_n_tokens(p) : 0, V = (size_t)tw_model_n_vocab(m);
    float *want = malloc(sizeof(float) * V * (n ? n : 1)), *got = malloc(sizeof(float) * V * (n ? n : 1));
    tw_prompt_media_info ma, mb;
    if (!p || !s || tw_prompt_media(p, 0, &ma) || tw_prompt_media(p, 1, &mb)) goto out;
    size_t a0 = ma.first_token, a1 = a0 + (size_t)ma.n_tokens, b0 = mb.first_token, b1 = b0 + (size_t)mb.n_tokens;
    CHECK(a1 < b0 && b1 + 8 < n && a1 - a0 > 30 && b1 - b0 > 20, "layout: image a [%zu, %zu), b [%zu, %zu) of %zu", a0, a1, b0, b1, n);

    /* the reference: the whole prompt at once, the logits of every position */
    tw_seq *f = NULL;
    CHECK_OK(tw_seq_new(m, 0, &f), "fresh seq");
    CHECK_OK(tw_prompt_eval(f, p, NULL, &(tw_eval_opts){ .logits = want }, NULL), "tw_prompt_eval");
    tw_seq_free(f);

    /* chunk sizes 1, 7, 64, and boundaries inside both images (chunks of 9 tokens or more): a
    ** chunk from inside a across the text into b gathers the rows of two media */
    size_t inside[] = { a0 + 10, a1 - a0 - 12, b0 + 10 - (a1 - 2), b1 - (b0 + 10) - 1, n, 0 };
    const size_t *plans[] = { (size_t[]){ 1, 0 }, (size_t[]){ 7, 0 }, (size_t[]){ 64, 0 }, inside };
    const char *names[] = { "chunks of 1", "chunks of 7", "chunks of 64", "chunk boundaries inside the images" };
    for (int i = 0; i < 4; i++) {
        bool one = false;
        tw_seq_rewind(s, 0);
        CHECK(eval_chunked(m, s, p, NULL, plans[i], got, &one, names[i]) == 0, "%s: a fresh sequence reuses nothing",
              names[i]);
        double d = max_diff(want, got, n * V), bound = bound_for(one, want, n * V);
        printf("  %s: every position's logits within %.2e of tw_prompt_eval's\n", names[i], d);
        CHECK(d <= bound, "%s: the logits of every position differ from tw_prompt_eval's by %g (bound %g)", names[i], d,
              bound);
        CHECK(tw_seq_pos(s) == (int32_t)n, "%s: the sequence holds the prompt", names[i]);
        if (i == 3) CHECK(!one, "%s: no short chunk", names[i]);
    }
    /* a chunked sequence is tagged like tw_prompt_eval's: the same prompt again reuses all but its
    ** last token */
    size_t r = 0;
    CHECK_OK(tw_prompt_eval(s, p, NULL, NULL, &r), "again");
    CHECK(r == n - 1, "after chunks, tw_prompt_eval reuses %zu of %zu", r, n);

    /* what a chunk hands out: ids, tags, and rows straight from one medium or gathered */
    const float *all = NULL;
    size_t n_rows = 0, H = (size_t)tw_model_n_embd(m);
    CHECK_OK(tw_prompt_embd(p, &all, &n_rows), "rows");
    const int32_t *ids = NULL;
    tw_eval_opts eo;
    CHECK_OK(tw_prompt_chunk(p, a0 + 2, 5, &ids, &eo), "chunk inside a");
    CHECK(ids == tw_prompt_tokens(p) + a0 + 2 && eo.n_embd_rows == 5 && eo.embd &&
          !memcmp(eo.embd, all + 2 * H, 5 * H * sizeof(float)) && eo.tags && eo.tags[0] == ma.hash &&
          eo.tags[4] == ma.hash && !eo.logits && !eo.hidden && !eo.logprobs,
          "a chunk inside image a: its rows, tagged with a's hash, the rest zeroed");
    CHECK_OK(tw_prompt_chunk(p, a1 - 1, b0 + 2 - (a1 - 1), &ids, &eo), "chunk across a and b");
    CHECK(eo.n_embd_rows == 3 && eo.embd && !memcmp(eo.embd, all + (a1 - a0 - 1) * H, 3 * H * sizeof(float)) &&
          eo.tags[0] == ma.hash && eo.tags[1] == 0 && eo.tags[b0 - (a1 - 1)] == mb.hash,
          "a chunk across a, text and b: the rows of both, text tagged 0");
    CHECK_OK(tw_prompt_chunk(p, a1, b0 - a1, &ids, &eo), "text between");
    CHECK(eo.embd == NULL && eo.n_embd_rows == 0 && eo.tags[0] == 0, "a text-only chunk has no rows");
    CHECK_OK(tw_prompt_chunk(p, n, 0, &ids, &eo), "empty chunk at the end");
    tw_status st = tw_prompt_chunk(p, n - 2, 3, &ids, &eo);
    CHECK(st == TW_E_ARG && ids == NULL, "a chunk past the end: %s", tw_status_name(st));
    st = tw_prompt_encode_from(p, n + 1, NULL, NULL);
    CHECK(st == TW_E_ARG, "encode_from past the end: %s", tw_status_name(st));
    /* opts->tags belong to the prompt */
    uint64_t tg[1] = { 0 };
    st = tw_prompt_eval(s, p, NULL, &(tw_eval_opts){ .tags = tg }, NULL);
    CHECK(st == TW_E_ARG && tw_seq_pos(s) == (int32_t)n, "tw_prompt_eval refuses opts->tags and changes nothing: %s",
          tw_status_name(st));
out:
    free(want), free(got);
    tw_seq_free(s);
    tw_prompt_free(p);
    tw_image_free(a), tw_image_free(b);
}

/* tw_prompt_encode_from encodes only the media with tokens at or after from; tw_prompt_chunk on a
** medium that is not encoded is an error naming it. */
static void test_encode_from(tw_model *m) {
    tw_image *a = pattern(60, 60, 13), *b = pattern(60, 60, 14);
    tw_media md[2] = { { TW_MEDIA_IMAGE, a, NULL }, { TW_MEDIA_IMAGE, b, NULL } };
    tw_prompt *p = NULL;
    CHECK_OK(tw_prompt_from_text(m, NULL, "<image><image>?", 15, md, 2, 0, &p), "two images");
    tw_prompt_media_info ma, mb;
    if (!p || tw_prompt_media(p, 0, &ma) || tw_prompt_media(p, 1, &mb)) goto out;
    size_t a1 = ma.first_token + (size_t)ma.n_tokens;
    const int32_t *ids = NULL;
    tw_eval_opts eo;
    tw_status st = tw_prompt_chunk(p, 0, tw_prompt_n_tokens(p), &ids, &eo);
    CHECK(st == TW_E_ARG && strstr(tw_last_error(), "not encoded") && ids == NULL && eo.embd == NULL,
          "a chunk over unencoded media: %s %s", tw_status_name(st), tw_last_error());
    CHECK_OK(tw_prompt_chunk(p, 0, ma.first_token, &ids, &eo), "the text before the media needs no encoding");
    CHECK_OK(tw_prompt_encode_from(p, a1, NULL, NULL), "encode from the end of a");
    tw_prompt_media(p, 0, &ma), tw_prompt_media(p, 1, &mb);
    CHECK(!ma.encoded && mb.encoded, "from the end of a: a wholly before is skipped, b is encoded (%d %d)", ma.encoded,
          mb.encoded);
    st = tw_prompt_chunk(p, a1 - 1, 2, &ids, &eo);
    CHECK(st == TW_E_ARG && strstr(tw_last_error(), "image 1"), "a chunk touching a's last token: %s", tw_last_error());
    CHECK_OK(tw_prompt_chunk(p, a1, mb.n_tokens, &ids, &eo), "b's tokens");
    CHECK(eo.n_embd_rows == (size_t)mb.n_tokens, "b's rows");
    CHECK_OK(tw_prompt_encode_from(p, a1 - 1, NULL, NULL), "encode from a's last token");
    tw_prompt_media(p, 0, &ma);
    CHECK(ma.encoded, "a medium with its last token at from is encoded");
out:
    tw_prompt_free(p);
    tw_image_free(a), tw_image_free(b);
}

/* A chat's second turn, chunked: the first turn's image is kept in the cache and not encoded
** again (no media cache lookup either); a different image of the same size stops reuse at its
** first token and is encoded; the same image in another sequence comes from the media cache. */
static void test_chunked_turns(tw_model *m) {
    tw_image *a = pattern(60, 60, 15), *b = pattern(60, 60, 16);
    tw_media_cache *c = NULL;
    tw_seq *s = NULL, *s2 = NULL;
    tw_prompt *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;
    tw_gen_result g = { 0 };
    CHECK_OK(tw_media_cache_new(m, 0, &c), "cache");
    CHECK_OK(tw_seq_new(m, 0, &s), "seq");
    tw_part u1[2] = { { TW_PART_IMAGE, .image = a }, { TW_PART_TEXT, .text = "Describe the image." } };
    tw_chat_message turn1 = { "user", u1, 2 };
    CHECK_OK(tw_prompt_from_chat(m, &turn1, 1, 1, &p1), "turn 1");
    if (!c || !s || !p1) goto out;
    tw_gen_params gp = tw_gen_default_params();
    gp.max_new_tokens = 4;
    gp.ignore_model_stops = 1;
    CHECK_OK(tw_prompt_generate(s, p1, c, &gp, NULL, NULL, &g, NULL), "turn 1 reply");
    tw_part r1[1] = { { TW_PART_TEXT, .text = g.text ? g.text : "" } }, u2[1] = { { TW_PART_TEXT, .text = "And the colours?" } };
    tw_chat_message chat[3] = { turn1, { "assistant", r1, 1 }, { "user", u2, 1 } };
    CHECK_OK(tw_prompt_from_chat(m, chat, 3, 1, &p2), "turn 2");
    if (!p2) goto out;
    tw_prompt_media_info mi;
    tw_prompt_media(p2, 0, &mi);
    size_t img_end = mi.first_token + (size_t)mi.n_tokens, k = 0;
    tw_media_cache_stats st0, st1;
    tw_media_cache_get_stats(c, &st0);
    bool one = false;
    k = eval_chunked(m, s, p2, c, (size_t[]){ 5, 0 }, NULL, &one, "turn 2 chunked");
    tw_media_cache_get_stats(c, &st1);
    tw_prompt_media(p2, 0, &mi);
    CHECK(k >= img_end && k < tw_prompt_n_tokens(p2), "turn 2 keeps the image positions (reused %zu, image ends at %zu)",
          k, img_end);
    CHECK(!mi.encoded && !mi.from_cache && st1.hits == st0.hits && st1.misses == st0.misses &&
          st1.images_encoded == st0.images_encoded, "turn 2 encodes nothing and asks the cache nothing (encoded %d, "
          "hits %llu -> %llu, misses %llu -> %llu)", mi.encoded, (unsigned long long)st0.hits,
          (unsigned long long)st1.hits, (unsigned long long)st0.misses, (unsigned long long)st1.misses);
    /* the kept prefix holds the reply, generated one token at a time */
    last_vs_fresh(m, s, p2, one || k > tw_prompt_n_tokens(p1), "turn 2 chunked");

    /* another image of the same size in the first turn */
    tw_part u3[2] = { { TW_PART_IMAGE, .image = b }, { TW_PART_TEXT, .text = "Describe the image." } };
    chat[0] = (tw_chat_message){ "user", u3, 2 };
    CHECK_OK(tw_prompt_from_chat(m, chat, 3, 1, &p3), "turn 2, other image");
    if (!p3) goto out;
    tw_prompt_media(p3, 0, &mi);
    CHECK(tw_prompt_n_tokens(p3) == tw_prompt_n_tokens(p2), "the same token count");
    k = eval_chunked(m, s, p3, c, (size_t[]){ 16, 0 }, NULL, &one, "other image chunked");
    tw_media_cache_get_stats(c, &st0);
    tw_prompt_media(p3, 0, &mi);
    CHECK(k == mi.first_token, "another image of the same size: reuse stops at its first token (%zu, want %zu)", k,
          mi.first_token);
    CHECK(mi.encoded && !mi.from_cache && st0.misses == st1.misses + 1 && st0.images_encoded == st1.images_encoded + 1,
          "the other image is encoded once, through the cache");
    last_vs_fresh(m, s, p3, one, "other image chunked");

    /* the same pixels, another prompt, another sequence: the rows come from the cache */
    CHECK_OK(tw_prompt_from_chat(m, chat, 3, 1, &p4), "turn 2 again");
    CHECK_OK(tw_seq_new(m, 0, &s2), "seq 2");
    if (!p4 || !s2) goto out;
    eval_chunked(m, s2, p4, c, (size_t[]){ 64, 0 }, NULL, &one, "from the cache");
    tw_media_cache_get_stats(c, &st1);
    tw_prompt_media(p4, 0, &mi);
    CHECK(mi.encoded && mi.from_cache && mi.encode_ms == 0 && st1.hits == st0.hits + 1 &&
          st1.images_encoded == st0.images_encoded, "the same image in another sequence comes from the cache");
    last_vs_fresh(m, s2, p4, one, "from the cache");

    /* reuse refuses a prompt that does not fit, and leaves the sequence as it was */
    tw_seq *small = NULL;
    CHECK_OK(tw_seq_new(m, 40, &small), "seq 40");
    if (small) {
        int32_t ids[3] = { 2, 3, 4 };
        CHECK_OK(tw_seq_eval(small, ids, 3, NULL), "3 tokens");
        size_t kk = 7;
        expect_fail(tw_prompt_reuse(small, p1, &kk), TW_E_CONTEXT, "but the context holds 40", "reuse over the context");
        CHECK(tw_seq_pos(small) == 3 && kk == 0, "the sequence is unchanged");
    }
    tw_seq_free(small);
out:
    tw_gen_result_free(&g);
    tw_seq_free(s), tw_seq_free(s2);
    tw_prompt_free(p1), tw_prompt_free(p2), tw_prompt_free(p3), tw_prompt_free(p4);
    tw_media_cache_free(c);
    tw_image_free(a), tw_image_free(b);
}

/* TowerVideo tiles a prompt's image only when it is alone; several are single tiles. */
static void test_onevision_images(tw_model *ov) {
    tw_image *a = pattern(200, 100, 7), *b = pattern(50, 80, 8);
    tw_media md[2] = { { TW_MEDIA_IMAGE, a, NULL }, { TW_MEDIA_IMAGE, b, NULL } };
    tw_prompt *one = NULL, *two = NULL;
    CHECK_OK(tw_prompt_from_text(ov, NULL, "x", 1, md, 1, 0, &one), "one image");
    CHECK_OK(tw_prompt_from_text(ov, NULL, "x", 1, md, 2, 0, &two), "two images");
    const tw_image *ims[2] = { a, b };
    int32_t counts[2] = { 0 }, alone = 0;
    CHECK_OK(tw_images_n_tokens(ov, ims, 2, counts), "counts");
    CHECK_OK(tw_image_n_tokens(ov, 200, 100, &alone), "count alone");
    tw_prompt_media_info mi;
    if (one && tw_prompt_media(one, 0, &mi) == TW_OK)
        CHECK(!mi.single_tile && mi.n_tokens == alone, "alone: tiled, %d tokens (want %d)", mi.n_tokens, alone);
    for (size_t i = 0; two && i < 2; i++)
        if (tw_prompt_media(two, i, &mi) == TW_OK)
            CHECK(mi.single_tile && mi.n_tokens == counts[i] && mi.index == (int32_t)i,
                  "image %zu of two: one tile, %d tokens (want %d)", i, mi.n_tokens, counts[i]);
    tw_prompt_free(one), tw_prompt_free(two);
    tw_image_free(a), tw_image_free(b);
}

static void test_tensor_files(void) {
    char path[] = "/tmp/tw_test_prompt_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    float f[6] = { 1, 2, 3, 4, 5, -6.5f };
    uint8_t u[3] = { 7, 8, 9 };
    int64_t i64[2] = { -1, 1LL << 40 }, s23[2] = { 2, 3 }, s3[1] = { 3 }, s2[1] = { 2 };
    tw_tensor_writer *w = NULL;
    CHECK_OK(tw_tensor_writer_new(&w), "writer");
    CHECK_OK(tw_tensor_writer_add(w, "f", TW_ELEM_F32, 2, s23, f), "add f");
    CHECK_OK(tw_tensor_writer_add(w, "u", TW_ELEM_U8, 1, s3, u), "add u");
    CHECK_OK(tw_tensor_writer_add(w, "i", TW_ELEM_I64, 1, s2, i64), "add i");
    CHECK(tw_tensor_writer_add(w, "f", TW_ELEM_F32, 2, s23, f) == TW_E_ARG, "a name added twice is refused");
    CHECK_OK(tw_tensor_writer_save(w, path), "save");
    tw_tensor_writer_free(w);
    tw_tensor_file *tf = NULL;
    CHECK_OK(tw_tensor_file_open(path, &tf), "open");
    tw_tensor_info t;
    if (tf && tw_tensor_file_get(tf, "f", &t) == TW_OK)
        CHECK(t.type == TW_ELEM_F32 && t.n_dims == 2 && t.shape[0] == 2 && t.shape[1] == 3 && !memcmp(t.data, f, sizeof f),
              "f round trip");
    if (tf && tw_tensor_file_get(tf, "i", &t) == TW_OK)
        CHECK(t.type == TW_ELEM_I64 && !memcmp(t.data, i64, sizeof i64), "i round trip");
    if (tf && tw_tensor_file_get(tf, "u", &t) == TW_OK)
        CHECK(t.type == TW_ELEM_U8 && !memcmp(t.data, u, sizeof u), "u round trip");
    CHECK(tf && tw_tensor_file_get(tf, "nope", &t) == TW_E_NOT_FOUND, "a missing name is TW_E_NOT_FOUND");
    tw_tensor_file_close(tf);
    unlink(path);
}

int main(void) {
    tw_model *m = load("tiny-towervision"), *ov = load("tiny-towervideo");
    if (m) {
        test_reuse(m);
        test_cache(m);
        test_observer(m);
        test_errors(m, ov);
        test_chunks(m);
        test_encode_from(m);
        test_chunked_turns(m);
    }
    if (ov) test_onevision_images(ov);
    test_tensor_files();
    tw_model_free(m);
    tw_model_free(ov);
    return th_report();
}
