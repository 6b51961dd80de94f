/*
** test_tokenizer.c — the tokenizer against the Hugging Face oracle fixtures (fixtures/tokenizer):
** every encode/decode case, the decode-only cases, the <image> vocabulary variant, the 1 MB text,
** the streaming detokenizer, bad inputs (missing file, malformed JSON, unsupported parts), and
** tw_tokenizer_load_mem against tw_tokenizer_load.
*/
#include "tower.h"
#include "testhelp.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------------- */

static int32_t *json_ids(const json_t *a, size_t *n) {
    *n = json_array_size(a);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

static int ids_equal(const int32_t *a, size_t na, const json_t *want) {
    if (na != json_array_size(want)) return 0;
    for (size_t i = 0; i < na; i++)
        if (a[i] != json_integer_value(json_array_get(want, i))) return 0;
    return 1;
}

static int str_equal(const char *s, size_t n, const json_t *want) {
    return json_is_string(want) && json_string_length(want) == n && memcmp(json_string_value(want), s, n) == 0;
}

/* Calls fn for each line of a .jsonl file; returns the number of lines. */
static int each_line(const char *path, void (*fn)(json_t *c, void *ctx), void *ctx) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *c = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, &e);
        CHECK(c != NULL, "%s: line %d: %s", path, n + 1, e.text);
        if (c) fn(c, ctx);
        json_decref(c);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

/* Streams ids through tw_detok one at a time; returns pushes + flush concatenated (malloc'ed). */
static char *stream_decode(const tw_tokenizer *tok, const int32_t *ids, size_t n, int skip, size_t *len) {
    tw_detok *d = NULL;
    if (tw_detok_new(tok, skip, &d) != TW_OK) return NULL;
    size_t cap = 64, used = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *s = NULL;
        size_t sn = 0;
        tw_status st = i < n ? tw_detok_push(d, ids[i], &s, &sn) : tw_detok_flush(d, &s, &sn);
        if (st != TW_OK) { free(out); tw_detok_free(d); return NULL; }
        while (used + sn + 1 > cap) cap *= 2;
        out = realloc(out, cap);
        memcpy(out + used, s, sn);
        used += sn;
    }
    out[used] = 0;
    tw_detok_free(d);
    *len = used;
    return out;
}

static int has_fffd(const char *s, size_t n) { return memmem(s, n, "\xEF\xBF\xBD", 3) != NULL; }

/* ---- cases.jsonl / cases_image_token.jsonl -------------------------------------------------- */

typedef struct { const tw_tokenizer *tok; int image_variant; } case_ctx;

static void check_case(json_t *c, void *vctx) {
    case_ctx *ctx = vctx;
    const tw_tokenizer *tok = ctx->tok;
    const char *id = json_string_value(json_object_get(c, "id"));
    const json_t *text = json_object_get(c, "text");
    int32_t *ids = NULL;
    size_t n = 0;
    tw_status st = tw_tokenize(tok, json_string_value(text), json_string_length(text), 0, &ids, &n);
    CHECK(st == TW_OK && ids_equal(ids, n, json_object_get(c, "ids_no_special")), "%s: ids_no_special (%s)", id, tw_last_error());
    free(ids);
    st = tw_tokenize(tok, json_string_value(text), json_string_length(text), 1, &ids, &n);
    CHECK(st == TW_OK && ids_equal(ids, n, json_object_get(c, "ids_with_special")), "%s: ids_with_special", id);
    free(ids);

    size_t nw;
    int32_t *want = json_ids(json_object_get(c, "ids_no_special"), &nw);
    const json_t *pieces = json_object_get(c, "pieces");
    if (pieces) {
        int ok = json_array_size(pieces) == nw;
        for (size_t i = 0; ok && i < nw; i++) {
            size_t pl;
            const char *p = tw_token_piece(tok, want[i], &pl);
            ok = p && str_equal(p, pl, json_array_get(pieces, i));
        }
        CHECK(ok, "%s: pieces", id);
    }
    char *dec = NULL;
    size_t dl = 0;
    st = tw_detokenize(tok, want, nw, 0, &dec, &dl);
    CHECK(st == TW_OK && str_equal(dec, dl, json_object_get(c, "decoded")), "%s: decoded", id);
    /* The streaming decoder gives the same text when the whole text is valid. */
    if (dec && !has_fffd(dec, dl)) {
        size_t sl = 0;
        char *s = stream_decode(tok, want, nw, 0, &sl);
        CHECK(s && sl == dl && memcmp(s, dec, dl) == 0, "%s: streaming decode", id);
        free(s);
    }
    free(dec);
    if (ctx->image_variant) {
        st = tw_detokenize(tok, want, nw, 1, &dec, &dl);
        CHECK(st == TW_OK && str_equal(dec, dl, json_object_get(c, "decoded_skip_special")), "%s: decoded_skip_special", id);
        free(dec);
    }
    free(want);
}

static void check_decode_case(json_t *c, void *vctx) {
    const tw_tokenizer *tok = vctx;
    const char *id = json_string_value(json_object_get(c, "id"));
    size_t n;
    int32_t *ids = json_ids(json_object_get(c, "ids"), &n);
    static const char *const field[2] = { "decoded", "decoded_skip_special" };
    for (int skip = 0; skip < 2; skip++) {
        char *dec = NULL;
        size_t dl = 0;
        tw_status st = tw_detokenize(tok, ids, n, skip, &dec, &dl);
        CHECK(st == TW_OK && str_equal(dec, dl, json_object_get(c, field[skip])), "%s: %s", id, field[skip]);
        if (dec && !has_fffd(dec, dl)) {
            size_t sl = 0;
            char *s = stream_decode(tok, ids, n, skip, &sl);
            CHECK(s && sl == dl && memcmp(s, dec, dl) == 0, "%s: streaming %s", id, field[skip]);
            free(s);
        }
        free(dec);
    }
    free(ids);
}

/* ---- streaming: incomplete byte runs are held back ------------------------------------------ */

static void test_stream_holdback(const tw_tokenizer *tok) {
    tw_detok *d = NULL;
    CHECK_OK(tw_detok_new(tok, 0, &d), "detok_new");
    if (!d) return;
    const char *s;
    size_t n;
    /* U+20000 = F0 A0 80 80 = <0xF0><0xA0><0x80><0x80> = 457 377 345 345 */
    const int32_t hold[4] = { 457, 377, 345, 345 };
    int held = 1;
    for (int i = 0; i < 3; i++) {
        tw_status st = tw_detok_push(d, hold[i], &s, &n);
        held = held && st == TW_OK && n == 0;
    }
    CHECK(held, "incomplete byte run is held back");
    CHECK(tw_detok_push(d, hold[3], &s, &n) == TW_OK && n == 4 && memcmp(s, "\xF0\xA0\x80\x80", 4) == 0,
          "completed character is emitted");
    /* A plain token goes out at once. */
    int32_t hello = tw_token_id(tok, "hello", 5);
    CHECK(hello >= 0 && tw_detok_push(d, hello, &s, &n) == TW_OK && n == 5 && memcmp(s, "hello", 5) == 0, "plain token");
    /* A truncated run: nothing mid-stream, one U+FFFD per byte token at flush (as HF decode). */
    CHECK(tw_detok_push(d, 457, &s, &n) == TW_OK && n == 0, "lead byte held");
    CHECK(tw_detok_push(d, 377, &s, &n) == TW_OK && n == 0, "second byte held");
    CHECK(tw_detok_flush(d, &s, &n) == TW_OK && n == 6 && memcmp(s, "\xEF\xBF\xBD\xEF\xBF\xBD", 6) == 0,
          "flush emits U+FFFD per dangling byte token");
    CHECK(tw_detok_flush(d, &s, &n) == TW_OK && n == 0, "second flush is empty");
    tw_detok_free(d);
}

/* ---- bad input ------------------------------------------------------------------------------ */

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

static void expect_fail(const char *name, const char *json, tw_status want, const char *must1, const char *must2) {
    const char *path = write_tmp(name, json);
    tw_tokenizer *t = (tw_tokenizer *)1;
    tw_status st = tw_tokenizer_load(path, &t);
    const char *msg = tw_last_error();
    CHECK(st == want && t == NULL && strstr(msg, name) && strstr(msg, must1) && (!must2 || strstr(msg, must2)),
          "%s: got %s \"%s\"", name, tw_status_name(st), msg);
    unlink(path);
}

/* A tiny tokenizer: merges as [a, b] pairs, a Split pre-tokenizer, no byte fallback (unk). */
static const char *k_tiny =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
    "{\"id\":7,\"content\":\"<x>\",\"special\":false,\"normalized\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"-\"},\"content\":\"_\"}]},"
    "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"_\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}],"
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[0],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Replace\",\"pattern\":{\"String\":\"_\"},\"content\":\" \"},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":false,"
    "\"vocab\":{\"<s>\":0,\"<unk>\":1,\"a\":2,\"b\":3,\"ab\":4,\"abb\":5,\"_\":6,\"\\u00e9\":8},"
    "\"merges\":[[\"a\",\"b\"],[\"ab\",\"b\"]]}}";

static void test_tiny(void) {
    const char *path = write_tmp("tiny.json", k_tiny);
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_tokenizer_load(path, &t), "load tiny tokenizer");
    unlink(path);
    if (!t) return;
    int32_t *ids = NULL;
    size_t n = 0;
    /* "abb-ab<x>zzé" -> abb _ ab <x> unk(zz fused) é, framed by <s> */
    const char text[] = "abb-ab<x>zz\xC3\xA9";
    CHECK_OK(tw_tokenize(t, text, sizeof text - 1, 1, &ids, &n), "tiny tokenize");
    const int32_t want[] = { 0, 5, 6, 4, 7, 1, 8, 0 };
    CHECK(n == 8 && ids && memcmp(ids, want, sizeof want) == 0, "tiny ids");
    char *dec = NULL;
    size_t dl;
    CHECK_OK(tw_detokenize(t, ids, n, 1, &dec, &dl), "tiny detokenize");
    CHECK(dec && strcmp(dec, "abb ab<x><unk>\xC3\xA9") == 0, "tiny decoded: %s", dec ? dec : "(null)");
    CHECK(tw_tokenizer_bos(t) == 0 && tw_tokenizer_vocab_size(t) == 9, "tiny bos / vocab size");
    CHECK(tw_token_piece(t, 9, NULL) == NULL && tw_token_piece(t, -1, NULL) == NULL, "bad ids have no piece");
    free(ids);
    free(dec);
    tw_tokenizer_free(t);
}

static void test_bad_input(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tw_test_tokenizer_%d", (int)getpid());
    mkdir(tmpdir, 0700);
    tw_tokenizer *t = (tw_tokenizer *)1;
    tw_status st = tw_tokenizer_load("/nonexistent/tokenizer.json", &t);
    CHECK(st == TW_E_NOT_FOUND && t == NULL && strstr(tw_last_error(), "/nonexistent/tokenizer.json"),
          "missing file: %s", tw_last_error());
    expect_fail("malformed.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}", TW_E_FORMAT, "invalid JSON", NULL);
    expect_fail("truncated.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a", TW_E_FORMAT,
                "invalid JSON", NULL);
    expect_fail("unigram.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0.0]]}}", TW_E_UNSUPPORTED,
                "model.type", "Unigram");
    expect_fail("nfkc.json",
                "{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                TW_E_UNSUPPORTED, "normalizer.type", "NFKC");
    expect_fail("bytelevel.json",
                "{\"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteLevel\"}]},"
                " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
                TW_E_UNSUPPORTED, "decoder.decoders[0].type", "ByteLevel");
    expect_fail("badmerge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a q\"]}}",
                TW_E_FORMAT, "model.merges[0]", NULL);
    expect_fail("novocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", TW_E_CONFIG, "model.vocab", NULL);
    test_tiny();
    rmdir(tmpdir);
}

/* ---- tw_tokenizer_load_mem ------------------------------------------------------------------- */

/* The fixture tokenizer.json from a buffer that is not NUL-terminated (exactly its bytes) gives
** the same ids as tw_tokenizer_load of the file; errors carry the caller's name. */
static void test_load_mem(void) {
    const char *path = th_path("tokenizer/tokenizer.json");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    tw_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(tw_tokenizer_load(path, &a), "tw_tokenizer_load(file)");
    CHECK_OK(tw_tokenizer_load_mem(buf, (size_t)n, "mem:tokenizer.json", &b), "tw_tokenizer_load_mem");
    free(buf);   /* the tokenizer keeps nothing of the caller's buffer */
    if (a && b) {
        CHECK(tw_tokenizer_vocab_size(a) == tw_tokenizer_vocab_size(b) && tw_tokenizer_bos(a) == tw_tokenizer_bos(b),
              "same vocab size and bos");
        static const char *const texts[] = { "Hello, world!", "  leading spaces\n\ttabs",
                                             "<start_of_turn>user\nTraduza: o gato dorme.<end_of_turn>\n",
                                             "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xC3\xA9t\xC3\xA9 \xF0\x9F\x98\x80 <0x41>",
                                             "" };
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            for (int sp = 0; sp < 2; sp++) {
                int32_t *x = NULL, *y = NULL;
                size_t nx = 0, ny = 0, len = strlen(texts[i]);
                CHECK_OK(tw_tokenize(a, texts[i], len, sp, &x, &nx), "tokenize (file)");
                CHECK_OK(tw_tokenize(b, texts[i], len, sp, &y, &ny), "tokenize (memory)");
                CHECK(nx == ny && (nx == 0 || (x && y && memcmp(x, y, nx * sizeof *x) == 0)),
                      "text %zu, add_special %d: same ids (%zu vs %zu)", i, sp, nx, ny);
                char *dx = NULL, *dy = NULL;
                size_t lx = 0, ly = 0;
                CHECK_OK(tw_detokenize(a, x, nx, 0, &dx, &lx), "detokenize (file)");
                CHECK_OK(tw_detokenize(b, y, ny, 0, &dy, &ly), "detokenize (memory)");
                CHECK(dx && dy && lx == ly && memcmp(dx, dy, lx) == 0, "text %zu: same decoded text", i);
                free(x), free(y), free(dx), free(dy);
            }
    }
    tw_tokenizer_free(a);
    tw_tokenizer_free(b);

    static const char broken[] = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}";
    tw_tokenizer *t = (tw_tokenizer *)1;
    tw_status st = tw_tokenizer_load_mem(broken, sizeof broken - 1, "packed.file:tokenizer.json", &t);
    CHECK(st == TW_E_FORMAT && t == NULL && strstr(tw_last_error(), "packed.file:tokenizer.json:1:") &&
          strstr(tw_last_error(), "invalid JSON"), "broken JSON in memory: %s", tw_last_error());
    st = tw_tokenizer_load_mem(broken, sizeof broken - 1, NULL, &t);
    CHECK(st == TW_E_FORMAT && strncmp(tw_last_error(), "tokenizer.json:", 15) == 0, "default name: %s",
          tw_last_error());
    t = (tw_tokenizer *)1;
    CHECK(tw_tokenizer_load_mem(NULL, 0, NULL, &t) == TW_E_ARG && t == NULL, "NULL json");
    t = NULL;
    CHECK_OK(tw_tokenizer_load_mem(k_tiny, strlen(k_tiny), "tiny", &t), "tiny from memory");
    CHECK(t && tw_tokenizer_vocab_size(t) == 9 && tw_tokenizer_bos(t) == 0, "tiny from memory: vocab, bos");
    tw_tokenizer_free(t);
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(void) {
    tw_tokenizer *tok = NULL;
    CHECK_OK(tw_tokenizer_load(th_path("tokenizer"), &tok), "load fixtures/tokenizer");
    if (!tok) return th_report();
    CHECK(tw_tokenizer_vocab_size(tok) == 256000, "vocab size %d", tw_tokenizer_vocab_size(tok));
    CHECK(tw_tokenizer_bos(tok) == 2, "bos");
    CHECK(tw_token_is_special(tok, 107) && !tw_token_is_special(tok, 4) && !tw_token_is_special(tok, 1000), "special flags");
    CHECK(tw_token_id(tok, "<start_of_turn>", 15) == 106 && tw_token_id(tok, "\xE2\x96\x81world", 8) >= 0 &&
          tw_token_id(tok, "<image>", 7) == -1, "tw_token_id");

    case_ctx ctx = { tok, 0 };
    int n = each_line(th_path("tokenizer/cases.jsonl"), check_case, &ctx);
    CHECK(n == 643, "cases.jsonl has %d cases", n);
    n = each_line(th_path("tokenizer/decode_cases.jsonl"), check_decode_case, tok);
    CHECK(n == 21, "decode_cases.jsonl has %d cases", n);
    test_stream_holdback(tok);

    /* The 1 MB multilingual text. */
    FILE *f = fopen(th_path("tokenizer/bench/multilingual_1mb.txt"), "rb");
    CHECK(f != NULL, "open 1 MB text");
    if (f) {
        static char big[1 << 21];
        size_t len = fread(big, 1, sizeof big, f);
        fclose(f);
        json_error_t e;
        json_t *want = json_load_file(th_path("tokenizer/bench/multilingual_1mb.ids.json"), 0, &e);
        int32_t *ids = NULL;
        size_t ni = 0;
        CHECK_OK(tw_tokenize(tok, big, len, 0, &ids, &ni), "tokenize 1 MB");
        CHECK(want && ids_equal(ids, ni, json_object_get(want, "ids")), "1 MB ids (%zu tokens)", ni);
        free(ids);
        json_decref(want);
    }
    tw_tokenizer_free(tok);

    /* The TowerVision variant: <image> = 256000, special. Loaded from a file path. */
    tok = NULL;
    CHECK_OK(tw_tokenizer_load(th_path("tiny-towervision/tokenizer.json"), &tok), "load tiny-towervision tokenizer");
    if (tok) {
        CHECK(tw_tokenizer_vocab_size(tok) == 256001 && tw_token_id(tok, "<image>", 7) == 256000 &&
              tw_token_is_special(tok, 256000), "<image> token");
        case_ctx ictx = { tok, 1 };
        n = each_line(th_path("tokenizer/cases_image_token.jsonl"), check_case, &ictx);
        CHECK(n == 12, "cases_image_token.jsonl has %d cases", n);
        tw_tokenizer_free(tok);
    }

    test_bad_input();
    test_load_mem();
    return th_report();
}
