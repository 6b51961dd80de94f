/*
** media.c — the images and videos of the command line and the generation helpers of run, chat
** and translate. Everything about where media go in a prompt, how many tokens they take, how
** they are encoded and when the KV cache can be reused is the library's (tw_prompt, see
** include/tower.h); this file opens the files, prints what -v asks for, and streams the reply.
*/
#include "media.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const k_kind_name[2] = {"image", "video"};

const char *media_label(const char *src, char *buf, size_t cap) {
    if (strncmp(src, "data:", 5) != 0) return src;
    size_t n = strcspn(src, ",;");
    snprintf(buf, cap, "%.*s,...", (int)(n < 40 ? n : 40), src);
    return buf;
}

/* Images need a vision checkpoint; videos a TowerVideo (LlavaOnevision) one, with a <video> token. */
static int require_media(const tw_model *m, tw_media_kind kind) {
    if (!tw_model_has_vision(m))
        return fail("%s: a text-only model (%s) has no vision tower and cannot take %ss (--%s, /%s)", tw_model_dir(m),
                    tw_model_arch(m), k_kind_name[kind], k_kind_name[kind], k_kind_name[kind]);
    int32_t n = 0;
    if (kind == TW_MEDIA_VIDEO && tw_video_n_tokens(m, 1, &n) != TW_OK)
        return fail("%s; videos need a TowerVideo (LlavaOnevision) checkpoint, TowerVision takes images only",
                    tw_last_error());
    return 0;
}

int media_open(const tw_model *m, tw_media_kind kind, const char *src, const char *const *frames, size_t n_paths,
               cli_media *ci) {
    memset(ci, 0, sizeof *ci);
    ci->kind = kind;
    if (require_media(m, kind)) return 1;
    char label[512];
    if (frames) snprintf(label, sizeof label, "%s ... %s (%zu files)", frames[0], frames[n_paths - 1], n_paths);
    else snprintf(label, sizeof label, "%s", src);
    double t0 = now_ms();
    tw_status st = kind == TW_MEDIA_IMAGE ? tw_image_load(src, NULL, &ci->im)
                 : frames ? tw_video_open_frames(frames, (int32_t)n_paths, g.n_frames, &ci->vid)
                          : tw_video_open(src, g.n_frames, &ci->vid);
    if (st != TW_OK) return fail_lib();
    double dt = now_ms() - t0;
    if (!(ci->src = xstrdup(label))) {
        media_close(ci);
        return fail("out of memory");
    }
    if (kind == TW_MEDIA_VIDEO && g.verbose) {   /* what was sampled, and how */
        const tw_video *v = ci->vid;
        int32_t F = tw_video_n_frames(v), n_tok = 0;
        tw_video_info vi;
        tw_video_get_info(v, &vi);
        tw_video_n_tokens(m, F, &n_tok);
        fprintf(stderr, "[video %s: %d of %lld frames (%s, %dx%d", media_label(ci->src, label, sizeof label), F,
                (long long)vi.total_frames, vi.codec ? vi.codec : "?", tw_video_width(v), tw_video_height(v));
        if (vi.fps > 0) fprintf(stderr, ", %.3g fps", vi.fps);
        if (vi.decode_errors) fprintf(stderr, ", %d packets skipped as undecodable", vi.decode_errors);
        fputs("), indices", stderr);
        for (int32_t i = 0; i < F; i++) fprintf(stderr, " %lld", (long long)tw_video_frame_indices(v)[i]);
        fprintf(stderr, "; decoded in %.1f ms; %d tokens]\n", dt, n_tok);
    }
    return 0;
}

void media_close(cli_media *ci) {
    free(ci->src);
    tw_image_free(ci->im);
    tw_video_free(ci->vid);
    memset(ci, 0, sizeof *ci);
}

void close_media(cli_media *items, size_t n) {
    for (size_t i = 0; items && i < n; i++) media_close(&items[i]);
    free(items);
}

size_t n_cli_videos(void) { return g.n_videos + (g.n_frame_paths > 0); }
size_t n_cli_media(void) { return g.n_images + n_cli_videos(); }

int open_cli_media(const tw_model *m, cli_media **out) {
    *out = NULL;
    size_t n = n_cli_media(), k = 0;
    if (!n) return 0;
    cli_media *items = calloc(n, sizeof *items);
    if (!items) return fail("out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < g.n_images; i++) rc = media_open(m, TW_MEDIA_IMAGE, g.images[i], NULL, 0, &items[k++]);
    for (size_t i = 0; !rc && i < g.n_videos; i++) rc = media_open(m, TW_MEDIA_VIDEO, g.videos[i], NULL, 0, &items[k++]);
    if (!rc && g.n_frame_paths)
        rc = media_open(m, TW_MEDIA_VIDEO, NULL, (const char *const *)g.frame_paths, g.n_frame_paths, &items[k++]);
    if (rc) {
        close_media(items, n);
        return rc;
    }
    *out = items;
    return 0;
}

tw_media *media_list(const cli_media *items, size_t n) {
    tw_media *md = malloc((n ? n : 1) * sizeof *md);
    if (!md) { fail("out of memory"); return NULL; }
    for (size_t i = 0; i < n; i++) md[i] = (tw_media){items[i].kind, items[i].im, items[i].vid};
    return md;
}

int make_prompt(tw_model *m, const char *user, int raw, const cli_media *items, size_t n, tw_prompt **out) {
    tw_media *md = media_list(items, n);
    if (!md) return 1;
    tw_status st = tw_prompt_from_text(m, raw ? NULL : g.system, user, strlen(user), md, n, raw ? TW_PROMPT_RAW : 0, out);
    free(md);
    return st == TW_OK ? 0 : fail_lib();
}

/* The command-line item a medium of the prompt is. */
static const cli_media *item_of(const tw_prompt_media_info *mi, const cli_media *items, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((mi->image && items[i].im == mi->image) || (mi->video && items[i].vid == mi->video)) return &items[i];
    return NULL;
}

void print_media_tokens(FILE *f, const tw_prompt *p, const cli_media *items, size_t n) {
    for (size_t i = 0; i < tw_prompt_n_media(p); i++) {
        tw_prompt_media_info mi;
        if (tw_prompt_media(p, i, &mi) != TW_OK) continue;
        const cli_media *ci = item_of(&mi, items, n);
        char buf[64];
        const char *src = ci ? media_label(ci->src, buf, sizeof buf) : "?";
        const char *pre = f == stderr ? (mi.kind == TW_MEDIA_IMAGE ? "[image tokens: " : "[video tokens: ") : "";
        if (mi.kind == TW_MEDIA_IMAGE)
            fprintf(f, "%s%d\t%dx%d\t%s%s\n", pre, mi.n_tokens, tw_image_width(mi.image), tw_image_height(mi.image), src,
                    f == stderr ? "]" : "");
        else
            fprintf(f, "%s%d\t%d frames of %dx%d\t%s%s\n", pre, mi.n_tokens, tw_video_n_frames(mi.video),
                    tw_video_width(mi.video), tw_video_height(mi.video), src, f == stderr ? "]" : "");
    }
}

/* -v: each medium the prompt encoded (not those from the cache or the KV cache). */
static void print_encodes(const tw_prompt *p, const cli_media *items, size_t n) {
    for (size_t i = 0; i < tw_prompt_n_media(p); i++) {
        tw_prompt_media_info mi;
        if (tw_prompt_media(p, i, &mi) != TW_OK || !mi.encoded || mi.from_cache || mi.encode_ms <= 0) continue;
        const cli_media *ci = item_of(&mi, items, n);
        char buf[64];
        const char *src = ci ? media_label(ci->src, buf, sizeof buf) : "?";
        if (mi.kind == TW_MEDIA_IMAGE)
            fprintf(stderr, "[image %d (%s): %dx%d, %d tokens, encoded in %.1f ms%s]\n", mi.index + 1, src,
                    tw_image_width(mi.image), tw_image_height(mi.image), mi.n_tokens, mi.encode_ms,
                    mi.single_tile ? ", one tile (one of the prompt's several images)" : "");
        else
            fprintf(stderr, "[video %s: %d frames encoded in %.1f ms, %d tokens]\n", src, tw_video_n_frames(mi.video),
                    mi.encode_ms, mi.n_tokens);
    }
}

/* ============================================================================================ */
/* Generation                                                                                   */

static volatile sig_atomic_t g_interrupted; /* Ctrl-C during generation                */

static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

/* Streams generated text to stdout. With stop strings the tail that could still become a stop
** string is held back, so a stop string is never printed, even partly. */
typedef struct stream {
    int    print;         /* write text to stdout                 */
    int    newline_safe;  /* --lines: newlines become spaces      */
    char  *acc;           /* all text so far (only with stops)    */
    size_t len, cap;
    size_t printed;       /* bytes of acc already written         */
} stream;

static void emit(const stream *s, const char *p, size_t n) {
    if (!s->print || !n) return;
    if (s->newline_safe) {
        for (size_t i = 0; i < n; i++) fputc(p[i] == '\n' || p[i] == '\r' ? ' ' : p[i], stdout);
    } else {
        fwrite(p, 1, n, stdout);
    }
    fflush(stdout);
}

static int on_token(void *ud, int32_t id, const char *text, size_t len) {
    stream *s = ud;
    (void)id;
    if (!g.n_stops) {
        emit(s, text, len);
        return g_interrupted;
    }
    if (s->len + len + 1 > s->cap) {
        size_t cap = (s->len + len + 1) * 2;
        char *a = realloc(s->acc, cap);
        if (!a) return 1;
        s->acc = a;
        s->cap = cap;
    }
    memcpy(s->acc + s->len, text, len);
    s->len += len;
    s->acc[s->len] = 0;
    size_t safe = s->len;
    for (size_t k = 0; k < g.n_stops; k++) {
        const char *st = g.stops[k];
        size_t sl = strlen(st);
        const char *hit = memmem(s->acc, s->len, st, sl);
        if (hit) { if ((size_t)(hit - s->acc) < safe) safe = (size_t)(hit - s->acc); continue; }
        for (size_t j = sl - 1; j > 0; j--)   /* longest suffix of acc that starts st */
            if (j <= s->len && memcmp(s->acc + s->len - j, st, j) == 0) {
                if (s->len - j < safe) safe = s->len - j;
                break;
            }
    }
    if (safe > s->printed) {
        emit(s, s->acc + s->printed, safe - s->printed);
        s->printed = safe;
    }
    return g_interrupted;
}

/* The library's name, except for the callback stop, which here is always Ctrl-C. */
static const char *stop_reason_name(tw_stop_reason r) {
    return r == TW_STOP_CALLBACK ? "interrupted" : tw_stop_reason_name(r);
}

tw_gen_params gen_params(int32_t default_max) {
    tw_gen_params p = tw_gen_default_params();
    p.max_new_tokens = g.max_new_set ? g.max_new : default_max;
    p.sampling = g.sp;
    p.stop_strings = (const char *const *)g.stops;
    p.n_stop_strings = g.n_stops;
    p.ignore_model_stops = g.ignore_eos;
    return p;
}

int generate_prompt(tw_seq *seq, tw_prompt *p, tw_media_cache *cache, const cli_media *items, size_t n_items,
                    const tw_gen_params *gp, int print, int newline_safe, tw_gen_result *res, size_t *reused) {
    stream s = {.print = print, .newline_safe = newline_safe};
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    tw_status st = tw_prompt_generate(seq, p, cache, gp, on_token, &s, res, reused);
    sigaction(SIGINT, &old, NULL);
    if (g.verbose) print_encodes(p, items, n_items);
    if (st != TW_OK) {
        free(s.acc);
        if (st != TW_E_CONTEXT) return fail_lib();
        int video = 0;
        for (size_t i = 0; i < n_items; i++) video |= items[i].kind == TW_MEDIA_VIDEO;
        return fail("%s (--ctx N%s)", tw_last_error(), video ? ", --frames N" : "");
    }
    if (g.n_stops && res->text_len > s.printed) emit(&s, res->text + s.printed, res->text_len - s.printed);
    free(s.acc);
    return 0;
}

void print_ids_line(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

void report_timing(size_t n_prompt, size_t reused, const tw_gen_result *r) {
    size_t evald = n_prompt - reused;
    fprintf(stderr, "[prompt %zu tokens (reused %zu, evaluated %zu) in %.1f ms, %.1f tok/s; generated %zu tokens in %.1f ms, "
                    "%.1f tok/s; stop: %s]\n",
            n_prompt, reused, evald, r->prefill_ms, r->prefill_ms > 0 ? evald * 1e3 / r->prefill_ms : 0.0, r->n_ids,
            r->decode_ms, r->decode_ms > 0 ? r->n_ids * 1e3 / r->decode_ms : 0.0, stop_reason_name(r->stop_reason));
}

/* ============================================================================================ */
/* run and translate                                                                            */

int one_shot(tw_model *m, tw_seq *seq, tw_media_cache *cache, const char *user, int raw, int newline_safe,
             const cli_media *items, size_t n) {
    tw_prompt *p = NULL;
    size_t reused = 0;
    int rc = make_prompt(m, user, raw, items, n, &p);
    if (rc) return rc;
    if (g.verbose && n) print_media_tokens(stderr, p, items, n);
    tw_gen_params gp = gen_params(1024);
    tw_gen_result res = {0};
    rc = generate_prompt(seq, p, cache, items, n, &gp, !g.print_ids, newline_safe, &res, &reused);
    if (!rc) {
        if (g.print_ids) print_ids_line(res.ids, res.n_ids);
        else putchar('\n');
        fflush(stdout);
        if (g.verbose) report_timing(tw_prompt_n_tokens(p), reused, &res);
        tw_gen_result_free(&res);
    }
    tw_prompt_free(p);
    return rc;
}

int show_prompt(tw_model *m, const char *user, int raw, size_t n_images, size_t n_videos) {
    char *text = NULL;
    if (tw_prompt_render(m, raw ? NULL : g.system, user, strlen(user), n_images, n_videos, raw ? TW_PROMPT_RAW : 0,
                         &text) != TW_OK)
        return fail_lib();
    fputs(text, stdout);
    tw_free(text);
    return 0;
}

/* Usage checks shared by run and translate for --image / --video / --image-tokens. */
void check_image_usage(void) {
    if (g.image_tokens && !n_cli_media()) usage_error("--image-tokens needs at least one --image or --video");
    for (size_t i = 0; i < g.n_videos; i++)
        if (!strcmp(g.videos[i], "-")) usage_error("--video cannot read stdin: give a file, directory or URL");
    size_t from_stdin = 0;
    for (size_t i = 0; i < g.n_images; i++) from_stdin += strcmp(g.images[i], "-") == 0;
    if (from_stdin > 1) usage_error("only one --image can be read from stdin ('-')");
    if (from_stdin && !g.image_tokens && !g.show_prompt && (!g.prompt || !strcmp(g.prompt, "-")) &&
        (!g.prompt_file || !strcmp(g.prompt_file, "-")))
        usage_error("--image - reads the image from stdin: give the text with -p TEXT or -f FILE");
}

/* --image-tokens: loads the model and the media, prints each one's token count (as one prompt's
** media: TowerVideo counts several images as single tiles), exits. */
int image_tokens_only(void) {
    tw_model *m = NULL;
    cli_media *items = NULL;
    tw_prompt *p = NULL;
    int rc = load_model(&m);
    if (!rc) rc = open_cli_media(m, &items);
    if (!rc) rc = make_prompt(m, "", 0, items, n_cli_media(), &p);
    if (!rc) print_media_tokens(stdout, p, items, n_cli_media());
    tw_prompt_free(p);
    close_media(items, n_cli_media());
    tw_model_free(m);
    return rc;
}
