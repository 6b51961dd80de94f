/*
** cmd_translate.c — `tower translate`: the TowerVision paper's translation prompt ("Translate the
** following source text from English to German:\n{source}") as one user turn, greedy by default;
** --lines translates every input line on its own. The language table is here.
*/
#include "commands.h"
#include "media.h"
#include "translate.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================ */
/* Languages                                                                                    */

/* The 20 TowerVision languages and variants. name: how the paper's prompt names the language
** ("Translate the following source text from English to German:\n{source}"; the CoMMuTE and
** Multi30K prompts of the authors' lmms-eval fork say "German", "French", "Czech", "Russian",
** "Chinese" for Simplified Chinese). aliases: accepted spellings, compared case-insensitively
** with '_' read as '-' (translate.h). */

static const language k_langs[] = {
    {"en", "English", {"english"}},
    {"de", "German", {"german", "deutsch"}},
    {"nl", "Dutch", {"dutch", "nederlands"}},
    {"es", "Spanish", {"spanish", "español", "espanol"}},
    {"fr", "French", {"french", "français", "francais"}},
    {"pt-PT", "Portuguese (Portugal)", {"pt", "portuguese", "portuguese (portugal)", "european portuguese", "por"}},
    {"pt-BR", "Portuguese (Brazil)", {"portuguese (brazil)", "portuguese (brazilian)", "brazilian portuguese", "brazilian"}},
    {"uk", "Ukrainian", {"ukrainian"}},
    {"hi", "Hindi", {"hindi"}},
    {"zh-Hans", "Chinese", {"zh", "zh-cn", "chinese", "chinese (simplified)", "simplified chinese", "mandarin"}},
    {"zh-Hant", "Chinese (Traditional)", {"zh-tw", "zh-hk", "chinese (traditional)", "traditional chinese"}},
    {"ru", "Russian", {"russian"}},
    {"cs", "Czech", {"czech", "cz"}},
    {"ko", "Korean", {"korean"}},
    {"ja", "Japanese", {"japanese", "jp"}},
    {"it", "Italian", {"italian"}},
    {"pl", "Polish", {"polish"}},
    {"ro", "Romanian", {"romanian"}},
    {"nn", "Norwegian (Nynorsk)", {"nynorsk", "norwegian nynorsk", "norwegian (nynorsk)"}},
    {"nb", "Norwegian (Bokmål)", {"no", "norwegian", "bokmål", "bokmal", "norwegian bokmål", "norwegian (bokmal)"}},
};
#define N_LANGS (sizeof k_langs / sizeof k_langs[0])

static int lang_eq(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        int ca = *a == '_' ? '-' : tolower((unsigned char)*a), cb = *b == '_' ? '-' : tolower((unsigned char)*b);
        if (ca != cb) return 0;
    }
    return *a == *b;
}

const language *find_language(const char *s) {
    for (size_t i = 0; i < N_LANGS; i++) {
        const language *l = &k_langs[i];
        if (lang_eq(s, l->code) || lang_eq(s, l->name)) return l;
        for (size_t j = 0; j < 6 && l->aliases[j]; j++)
            if (lang_eq(s, l->aliases[j])) return l;
    }
    return NULL;
}

static void list_languages(FILE *f) {
    fprintf(f, "%-8s %-24s %s\n", "code", "name in the prompt", "also accepted");
    for (size_t i = 0; i < N_LANGS; i++) {
        fprintf(f, "%-8s %-24s", k_langs[i].code, k_langs[i].name);
        for (size_t j = 0; j < 6 && k_langs[i].aliases[j]; j++) fprintf(f, "%s%s", j ? ", " : " ", k_langs[i].aliases[j]);
        fputc('\n', f);
    }
}

const language *language_arg(const char *opt, const char *s) {
    const language *l = find_language(s);
    if (l) return l;
    fprintf(stderr, "tower: error: %s: unknown language '%s'. Valid languages (name or code, any case):\n", opt, s);
    for (size_t i = 0; i < N_LANGS; i++) fprintf(stderr, "  %-8s %s\n", k_langs[i].code, k_langs[i].name);
    return NULL;
}

/* ============================================================================================ */
/* translate                                                                                    */

void tower_help_translate(void) {
    printf("usage: tower translate -m MODEL --to LANG [--from LANG] [-p TEXT | -f FILE | < stdin] [options]\n"
           "       tower translate -m MODEL --dataset FILE --to LANG[,LANG...] [dataset options]\n"
           "       tower translate --dataset FILE --min-score X [--score-field F] [--drop-flagged] [-o OUT]\n\n"
           "Translates with the prompt the TowerVision paper evaluates with, as one user turn:\n"
           "  Translate the following source text from English to German:\\n{source}\n"
           "Greedy decoding unless sampling options are given.\n\n"
           "  --from LANG          source language (default: English)\n"
           "  --to LANG            target language (required)\n"
           "                       LANG: English name or code, any case: en de nl es fr pt-PT (pt) pt-BR\n"
           "                       uk hi zh-Hans (zh, zh-CN) zh-Hant (zh-TW) ru cs ko ja it pl ro nn nb (no)\n"
           "  --list-languages     print the language table and exit\n"
           "  --lines              translate every input line on its own; one output line per input line\n"
           "  -p, --prompt TEXT    source text ('-': stdin); -f, --file (or --prompt-file) FILE: from FILE\n"
           "  --show-prompt        print the rendered prompt and exit; --print-ids: print ids not text\n"
           "  --image SRC          multimodal translation: the image comes first, as in the paper:\n"
           "                       <image>\\nTranslate the following source text from English to German:\\n{source}\n"
           "                       (repeatable; with --lines every line sees the image, encoded once)\n"
           "  --video SRC, --frames N, --video-frames F1,...   a video (TowerVideo), after the images\n"
           "  --image-tokens       print each image's / video's prompt tokens and exit\n\n"
           "datasets (the VisionBlocks recipe: text only, every human and model turn translated):\n"
           "  --dataset FILE       LLaVA conversations (a JSON array or JSON lines of {\"id\", \"image\" |\n"
           "                       \"video\", \"conversations\": [{\"from\", \"value\"}, ...]}) or JSON lines with\n"
           "                       a text field; <image> / <video> markers are kept, the text around them\n"
           "                       translated. Writes DIR/NAME.LANG.json[l] per --to language (comma-separated)\n"
           "  --out-dir DIR        where the outputs go (default: the dataset's directory); -o FILE: one --to\n"
           "  --text-field NAME    JSON lines of text: the field to translate (default \"text\")\n"
           "  --batch N            sequences decoded together (default 8; the output is the same for every N)\n"
           "  --resume             continue an interrupted run (OUT.partial); --force: start over / overwrite\n"
           "  --limit N            translate at most N items in this run (--resume continues)\n"
           "  --on-error skip|stop bad data (a malformed line, a missing field) or an item that fails:\n"
           "                       stop (default) or report FILE:LINE and go on without it\n"
           "  --min-score X        only items whose score field is >= X (the paper kept COMETKiwi >= 0.85);\n"
           "                       --score-field F: that field (default \"score\"). Without --to: filter only\n"
           "                       (no model), the kept items to -o FILE or stdout\n"
           "  --drop-flagged       leave out items flagged empty, marker_count, too_long (> 3x the source's\n"
           "                       characters + 10) or max_tokens; by default they are kept, with\n"
           "                       \"translation_flags\": [...]\n\n"
           HELP_SAMPLING_OPTS "\n" HELP_MODEL_OPTS "\n"
           "examples:\n"
           "  tower translate -m utter-project/TowerVision-2B --to de -p \"The weather is lovely today.\"\n"
           "  tower translate -m ./TowerVision-9B --from en --to pt-BR --lines -f test.en > hyp.pt\n"
           "  tower translate -m ./TowerVision-2B --to de --image scene.jpg -p \"He is holding a bat.\"\n"
           "  tower translate -m ./TowerVision-9B --dataset llava_instruct.json --to de,fr,pt-BR --out-dir ml/\n"
           "  tower translate --dataset ml/llava_instruct.de.json --min-score 0.85 --score-field cometkiwi -o kept.json\n");
}

/* Builds the paper's translation request for one source text; with images (multimodal
** translation) their placeholders come first, one "<image>\n" each, as in the paper, then one
** "<video>\n" per video. */
char *translation_request(const language *from, const language *to, const char *src, size_t n_images,
                          size_t n_videos) {
    const char *fmt = "Translate the following source text from %s to %s:\n%s";
    size_t pre = n_images * strlen("<image>\n") + n_videos * strlen("<video>\n");
    size_t n = pre + strlen(fmt) + strlen(from->name) + strlen(to->name) + strlen(src) + 1;
    char *s = malloc(n), *o = s;
    if (!s) return NULL;
    for (size_t i = 0; i < n_images; i++) o += sprintf(o, "<image>\n");
    for (size_t i = 0; i < n_videos; i++) o += sprintf(o, "<video>\n");
    snprintf(o, n - pre, fmt, from->name, to->name, src);
    return s;
}

/* --dataset takes none of the one-text options, and they take none of its. */
static void check_dataset_usage(void) {
    if (g.dataset) {
        const char *bad = g.prompt ? "-p" : g.prompt_file ? "-f" : g.lines ? "--lines" : g.show_prompt ? "--show-prompt"
                        : g.print_ids ? "--print-ids" : g.image_tokens ? "--image-tokens" : NULL;
        if (bad) usage_error("--dataset translates the dataset's text: %s does not go with it", bad);
        if (n_cli_media()) usage_error("--dataset translates text only (the paper's recipe): drop --image / --video");
        return;
    }
    const char *bad = g.out_dir ? "--out-dir" : g.text_field ? "--text-field" : g.n_batch ? "--batch"
                    : g.min_score_set ? "--min-score" : g.score_field ? "--score-field" : g.on_error_skip ? "--on-error"
                    : g.resume ? "--resume" : g.force ? "--force" : g.drop_flagged ? "--drop-flagged"
                    : g.limit ? "--limit" : g.out ? "-o" : NULL;
    if (bad) usage_error("%s needs --dataset FILE", bad);
    if (g.to && strchr(g.to, ',')) usage_error("--to %s: several languages need --dataset FILE", g.to);
}

int tower_cmd_translate(int argc, char **argv) {
    parse_options(argc, argv, C_TRANSLATE, tower_help_translate);
    if (g.list_languages) { list_languages(stdout); return 0; }
    check_dataset_usage();
    if (g.dataset) return translate_dataset();
    check_image_usage();
    if (g.image_tokens) { require_model(); return image_tokens_only(); }
    if (!g.to) usage_error("missing --to LANG (see --list-languages)");
    require_model();
    const language *from = language_arg("--from", g.from ? g.from : "en"), *to = from ? language_arg("--to", g.to) : NULL;
    if (!from || !to) return 1;
    char *text = NULL;
    size_t len = 0;
    if (read_prompt(&text, &len)) return 1;
    if (strlen(text) != len) { free(text); return fail("the source text contains a NUL byte"); }
    if (blank(text)) { free(text); return fail("the source text is empty"); }
    /* one source text: drop trailing newlines (the template trims the turn anyway) */
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) text[--len] = 0;

    tw_model *m = NULL;
    tw_seq *seq = NULL;
    cli_media *imgs = NULL;   /* decoded once; encoded once through the cache for every line */
    tw_media_cache *cache = NULL;
    size_t n_media = n_cli_media();
    int rc = load_model(&m);
    if (!rc && !g.show_prompt) {
        rc = open_cli_media(m, &imgs);   /* images then videos: the request's order */
        if (!rc && tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) rc = fail_lib();
        if (!rc && n_media && tw_media_cache_new(m, 0, &cache) != TW_OK) rc = fail_lib();
    }
    char *line = text;
    while (!rc) {
        char *next = NULL;
        if (g.lines) {
            char *nl = strchr(line, '\n');
            if (nl) { *nl = 0; next = nl + 1; }
            size_t ll = strlen(line);
            if (ll && line[ll - 1] == '\r') line[ll - 1] = 0;
        }
        if (g.lines && !*line) {
            if (!g.show_prompt) putchar('\n');   /* keep output lines aligned with input lines */
        } else {
            char *req = translation_request(from, to, line, g.n_images, n_cli_videos());
            if (!req) { rc = fail("out of memory"); break; }
            if (g.show_prompt) rc = show_prompt(m, req, 0, g.n_images, n_cli_videos());
            else rc = one_shot(m, seq, cache, req, 0, g.lines, imgs, n_media);
            free(req);
        }
        if (!next || !*next) break;
        line = next;
    }
    close_media(imgs, n_media);
    tw_media_cache_free(cache);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}
