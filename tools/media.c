/*
** media.c — the images and videos of a prompt and the generation helpers of run, chat, translate
** and dump: decoded and counted first, placed at the prompt's "<image>" / "<video>" placeholders
** (in order of appearance), encoded once (a prompt's images together: tw_images_encode), and
** their features passed, concatenated in prompt order, as tw_eval_opts.embd; the KV cache is
** reused across turns only where it holds the very same image or video.
**
** Moved here unchanged from tools/tower.c. The library's multimodal prompt API (src/run/prompt.c)
** is to replace this file; until then it is the one file of tools/ that uses the vision and video
** internals (src/model/vision.h, src/media/video.h), with cmd_dump.c.
*/
#define TOWER_MEDIA_INTERNALS
#include "media.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================================================ */
/* Media: images and videos                                                                     */

static const char *const k_placeholder[2] = {"<image>", "<video>"};   /* by media_kind */
const char *const k_kind_name[2] = {"image", "video"};
static int32_t g_next_serial;   /* serial numbers are never reused */

/* A short name for messages: data: URLs are cut after their media type. */
static const char *media_label(const char *src, char *buf, size_t cap) {
    if (strncmp(src, "data:", 5) != 0) return src;
    size_t n = strcspn(src, ",;");
    snprintf(buf, cap, "%.*s,...", (int)(n < 40 ? n : 40), src);
    return buf;
}

static int require_vision(const tw_model *m) {
    if (m->has_vision && tw_model_image_token(m) >= 0) return 0;
    return fail("%s: a text-only model (%s) has no vision tower and cannot take images (--image, /image)",
                tw_model_dir(m), tw_model_arch(m));
}

/* Videos need a LlavaOnevision (TowerVideo) checkpoint: one with a <video> token. */
static int require_video(const tw_model *m) {
    int32_t n = 0;
    if (!m->has_vision)
        return fail("%s: a text-only model (%s) has no vision tower and cannot take videos (--video, /video)",
                    tw_model_dir(m), tw_model_arch(m));
    if (tw_video_n_tokens(m, 1, &n) != TW_OK)
        return fail("%s; videos need a TowerVideo (LlavaOnevision) checkpoint, TowerVision takes images only",
                    tw_last_error());
    return 0;
}

/* Decodes one image and works out its token count as the prompt's only image. */
static int image_open(const tw_model *m, const char *src, cli_media *ci) {
    memset(ci, 0, sizeof *ci);
    ci->kind = MEDIA_IMAGE;
    if (require_vision(m)) return 1;
    if (tw_image_load(src, NULL, &ci->im) != TW_OK) return fail_lib();
    int rc = 0;
    if (tw_image_n_tokens(m, tw_image_width(ci->im), tw_image_height(ci->im), &ci->n_tokens) != TW_OK) rc = fail_lib();
    else if (!(ci->src = xstrdup(src))) rc = fail("out of memory");
    if (rc) {
        tw_image_free(ci->im);
        ci->im = NULL;
        return rc;
    }
    ci->serial = g_next_serial++;
    return 0;
}

/* Opens a video (file, directory of frames or URL: src; or a list of frame images: frames) and
** samples g.n_frames frames. -v: what was sampled and how long decoding took. */
static int video_open(const tw_model *m, const char *src, const char *const *frames, size_t n_paths, cli_media *ci) {
    memset(ci, 0, sizeof *ci);
    ci->kind = MEDIA_VIDEO;
    if (require_video(m)) return 1;
    char label[512];
    if (frames) snprintf(label, sizeof label, "%s ... %s (%zu files)", frames[0], frames[n_paths - 1], n_paths);
    else snprintf(label, sizeof label, "%s", src);
    double t0 = now_ms();
    tw_status st = frames ? tw_video_open_frames(frames, (int32_t)n_paths, g.n_frames, &ci->vid)
                          : tw_video_open(src, g.n_frames, &ci->vid);
    if (st != TW_OK) return fail_lib();
    double dt = now_ms() - t0;
    int rc = 0;
    if (tw_video_n_tokens(m, tw_video_n_frames(ci->vid), &ci->n_tokens) != TW_OK) rc = fail_lib();
    else if (!(ci->src = xstrdup(label))) rc = fail("out of memory");
    if (rc) {
        tw_video_free(ci->vid);
        ci->vid = NULL;
        return rc;
    }
    ci->serial = g_next_serial++;
    if (g.verbose) {
        const tw_video *v = ci->vid;
        fprintf(stderr, "[video %s: %d of %lld frames (%s, %dx%d", media_label(ci->src, label, sizeof label),
                v->n_frames, (long long)v->total_frames, v->codec, v->width, v->height);
        if (v->fps > 0) fprintf(stderr, ", %.3g fps", v->fps);
        if (v->decode_errors) fprintf(stderr, ", %d packets skipped as undecodable", v->decode_errors);
        fputs("), indices", stderr);
        for (int32_t i = 0; i < v->n_frames; i++) fprintf(stderr, " %lld", (long long)v->indices[i]);
        fprintf(stderr, "; decoded in %.1f ms; %d tokens]\n", dt, ci->n_tokens);
    }
    return 0;
}

static void media_close(cli_media *ci) {
    free(ci->src);
    tw_image_free(ci->im);
    tw_video_free(ci->vid);
    free(ci->embd);
    memset(ci, 0, sizeof *ci);
}

void close_media(cli_media *items, size_t n) {
    for (size_t i = 0; items && i < n; i++) media_close(&items[i]);
    free(items);
}

size_t n_cli_videos(void) { return g.n_videos + (g.n_frame_paths > 0); }
size_t n_cli_media(void) { return g.n_images + n_cli_videos(); }

/* Opens the command line's media: the --image list, then the --video list, then the video
** given by --video-frame(s). Not yet in prompt order (order_media) nor counted together
** (media_count). */
int open_cli_media(const tw_model *m, cli_media **out) {
    *out = NULL;
    size_t n = n_cli_media(), k = 0;
    if (!n) return 0;
    cli_media *items = calloc(n, sizeof *items);
    if (!items) return fail("out of memory");
    int rc = 0;
    for (size_t i = 0; !rc && i < g.n_images; i++) rc = image_open(m, g.images[i], &items[k++]);
    for (size_t i = 0; !rc && i < g.n_videos; i++) rc = video_open(m, g.videos[i], NULL, 0, &items[k++]);
    if (!rc && g.n_frame_paths)
        rc = video_open(m, NULL, (const char *const *)g.frame_paths, g.n_frame_paths, &items[k++]);
    if (rc) {
        close_media(items, n);
        return rc;
    }
    *out = items;
    return 0;
}

/* Works out every image's count as part of this prompt (tw_images_n_tokens); an image whose
** count changes drops its features and takes a new serial, so no cache entry is reused. */
int media_count(const tw_model *m, cli_media *items, size_t n) {
    size_t ni = 0;
    for (size_t i = 0; i < n; i++) ni += items[i].kind == MEDIA_IMAGE;
    if (!ni) return 0;
    const tw_image **ims = malloc(ni * sizeof *ims);
    int32_t *cnt = malloc(ni * sizeof *cnt);
    int rc = 0;
    if (!ims || !cnt) rc = fail("out of memory");
    for (size_t i = 0, j = 0; !rc && i < n; i++)
        if (items[i].kind == MEDIA_IMAGE) ims[j++] = items[i].im;
    if (!rc && tw_images_n_tokens(m, ims, ni, cnt) != TW_OK) rc = fail_lib();
    for (size_t i = 0, j = 0; !rc && i < n; i++) {
        if (items[i].kind != MEDIA_IMAGE) continue;
        if (cnt[j] != items[i].n_tokens) {
            free(items[i].embd);
            items[i].embd = NULL;
            items[i].n_tokens = cnt[j];
            items[i].serial = g_next_serial++;
        }
        j++;
    }
    free(ims);
    free(cnt);
    return rc;
}

/* Encodes what has no features yet. Images go through tw_images_encode as one prompt's set (the
** ones missing alone when that counts them the same way, else all of them); videos one by one.
** -v: timings. */
int media_encode(const tw_model *m, cli_media *items, size_t n) {
    size_t ni = 0, nmiss = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].kind == MEDIA_IMAGE) ni++, nmiss += !items[i].embd;
    int rc = 0;
    if (nmiss) {
        const tw_image **all = malloc(ni * sizeof *all), **miss = malloc(nmiss * sizeof *miss);
        cli_media **all_it = malloc(ni * sizeof *all_it), **miss_it = malloc(nmiss * sizeof *miss_it);
        int32_t *cnt = malloc(ni * sizeof *cnt);
        float *rows = NULL;
        if (!all || !miss || !all_it || !miss_it || !cnt) rc = fail("out of memory");
        for (size_t i = 0, a = 0, b = 0; !rc && i < n; i++) {
            if (items[i].kind != MEDIA_IMAGE) continue;
            all_it[a] = &items[i], all[a++] = items[i].im;
            if (!items[i].embd) miss_it[b] = &items[i], miss[b++] = items[i].im;
        }
        /* the missing ones alone, if that does not change how they are counted */
        int alone = !rc && tw_images_n_tokens(m, miss, nmiss, cnt) == TW_OK;
        for (size_t b = 0; alone && b < nmiss; b++) alone = cnt[b] == miss_it[b]->n_tokens;
        const tw_image **set = alone ? miss : all;
        cli_media **set_it = alone ? miss_it : all_it;
        size_t nset = alone ? nmiss : ni;
        double t0 = now_ms();
        if (!rc && tw_images_encode(m, set, nset, &rows, cnt) != TW_OK) rc = fail_lib();
        double dt = now_ms() - t0;
        size_t H = (size_t)tw_model_n_embd(m), off = 0;
        for (size_t j = 0; !rc && j < nset; j++) {
            cli_media *ci = set_it[j];
            if (cnt[j] != ci->n_tokens) {
                rc = fail("image %s: encoded to %d tokens, %d were planned", ci->src, cnt[j], ci->n_tokens);
                break;
            }
            if (!ci->embd) {
                if (!(ci->embd = malloc((size_t)cnt[j] * H * sizeof *ci->embd))) { rc = fail("out of memory"); break; }
                memcpy(ci->embd, rows + off * H, (size_t)cnt[j] * H * sizeof *ci->embd);
            }
            off += (size_t)cnt[j];
            if (g.verbose) {   /* the time is the whole set's when several images are encoded together */
                char buf[64];
                size_t index = 1;
                for (size_t a = 0; all_it[a] != ci; a++) index++;
                fprintf(stderr, "[image %zu (%s): %dx%d, %d tokens, encoded in %.1f ms%s]\n", index,
                        media_label(ci->src, buf, sizeof buf), tw_image_width(ci->im), tw_image_height(ci->im),
                        ci->n_tokens, dt, nset < 2 ? "" : m->arch == TW_ARCH_LLAVA_ONEVISION
                        ? " with the prompt's other images, one tile each" : " with the prompt's other images");
            }
        }
        free(all), free(miss), free(all_it), free(miss_it), free(cnt), free(rows);
    }
    for (size_t i = 0; !rc && i < n; i++) {
        cli_media *ci = &items[i];
        if (ci->kind != MEDIA_VIDEO || ci->embd) continue;
        double t0 = now_ms();
        int32_t got = 0;
        if (tw_video_encode(m, ci->vid, &ci->embd, &got) != TW_OK) { rc = fail_lib(); break; }
        if (got != ci->n_tokens) rc = fail("video %s: encoded to %d tokens, %d were planned", ci->src, got, ci->n_tokens);
        else if (g.verbose)
            fprintf(stderr, "[video %s: %d frames encoded in %.1f ms, %d tokens]\n", ci->src,
                    tw_video_n_frames(ci->vid), now_ms() - t0, got);
    }
    return rc;
}

/* --image-tokens: one line per image or video: tokens, size, source. */
void print_media_tokens(FILE *f, const cli_media *items, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        const cli_media *ci = &items[i];
        const char *pre = f == stderr ? (ci->kind == MEDIA_IMAGE ? "[image tokens: " : "[video tokens: ") : "";
        if (ci->kind == MEDIA_IMAGE)
            fprintf(f, "%s%d\t%dx%d\t%s%s\n", pre, ci->n_tokens, tw_image_width(ci->im), tw_image_height(ci->im),
                    media_label(ci->src, buf, sizeof buf), f == stderr ? "]" : "");
        else
            fprintf(f, "%s%d\t%d frames of %dx%d\t%s%s\n", pre, ci->n_tokens, tw_video_n_frames(ci->vid),
                    ci->vid->width, ci->vid->height, media_label(ci->src, buf, sizeof buf), f == stderr ? "]" : "");
    }
}

static size_t count_placeholders(const char *s, media_kind k) {
    size_t n = 0, pl = strlen(k_placeholder[k]);
    for (const char *p = s; (p = strstr(p, k_placeholder[k])) != NULL; p += pl) n++;
    return n;
}

/* The text with one "<image>" per image and one "<video>" per video: as written when its
** placeholders of a kind match the media of that kind, else (none of that kind written, prepend
** allowed) one "<image>\n" per image then one "<video>\n" per video before the text, as the
** TowerVision / TowerVideo model cards put them. NULL after printing an error. */
char *place_media(const char *text, size_t n_images, size_t n_videos, int prepend) {
    size_t want[2] = {n_images, n_videos}, add[2] = {0, 0}, extra = 0, len = strlen(text);
    for (int k = 0; k < 2; k++) {
        size_t have = count_placeholders(text, (media_kind)k);
        if (!want[k] || have == want[k]) continue;
        if (have == 0 && prepend) {
            add[k] = want[k];
            extra += want[k] * (strlen(k_placeholder[k]) + 1);
            continue;
        }
        fail("the prompt has %zu %s placeholder(s) but %zu %s(s) were given: write one %s where each %s goes%s", have,
             k_placeholder[k], want[k], k_kind_name[k], k_placeholder[k], k_kind_name[k],
             prepend ? ", or none to put them first" : "");
        return NULL;
    }
    char *out = malloc(len + extra + 1), *o = out;
    if (!out) { fail("out of memory"); return NULL; }
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < add[k]; i++) o += sprintf(o, "%s\n", k_placeholder[k]);
    memcpy(o, text, len + 1);
    return out;
}

/* Puts items (images in their given order, videos in theirs) into the order in which text's
** placeholders name them: the i-th "<image>" is the i-th image, the i-th "<video>" the i-th video. */
int order_media(const char *text, cli_media *items, size_t n) {
    if (n < 2) return 0;
    cli_media *sorted = malloc(n * sizeof *sorted);
    char *used = calloc(n, 1);
    if (!sorted || !used) { free(sorted); free(used); return fail("out of memory"); }
    size_t k = 0;
    for (const char *p = text; k < n && *p; p++) {
        int kind = !strncmp(p, k_placeholder[MEDIA_IMAGE], strlen(k_placeholder[MEDIA_IMAGE])) ? MEDIA_IMAGE
                 : !strncmp(p, k_placeholder[MEDIA_VIDEO], strlen(k_placeholder[MEDIA_VIDEO])) ? MEDIA_VIDEO : -1;
        if (kind < 0) continue;
        for (size_t i = 0; i < n; i++)
            if (!used[i] && items[i].kind == (media_kind)kind) { used[i] = 1; sorted[k++] = items[i]; break; }
    }
    for (size_t i = 0; i < n; i++)   /* not named (cannot happen after place_media): keep at the end */
        if (!used[i]) sorted[k++] = items[i];
    memcpy(items, sorted, n * sizeof *items);
    free(sorted);
    free(used);
    return 0;
}

void media_free(prompt_media *pm) {
    free(pm->embd);
    free(pm->tags);
    memset(pm, 0, sizeof *pm);
}

/* items[i] must be encoded; ids come from tw_tokenize_prompt with their token counts. */
int media_build(const tw_model *m, const int32_t *ids, size_t n_ids, const cli_media *items, size_t n,
                       prompt_media *pm) {
    memset(pm, 0, sizeof *pm);
    if (!n) return 0;
    size_t H = (size_t)tw_model_n_embd(m), rows = 0;
    int32_t tok[2] = {tw_model_image_token(m), tw_model_video_token(m)};
    for (size_t i = 0; i < n; i++) rows += (size_t)items[i].n_tokens;
    pm->embd = malloc((rows ? rows : 1) * H * sizeof *pm->embd);
    pm->tags = malloc((n_ids ? n_ids : 1) * sizeof *pm->tags);
    if (!pm->embd || !pm->tags) { media_free(pm); return fail("out of memory (%zu media tokens)", rows); }
    size_t r = 0, cur = 0, used = 0;   /* rows written; current item; its rows used so far */
    for (size_t i = 0; i < n; i++) {
        memcpy(pm->embd + r * H, items[i].embd, (size_t)items[i].n_tokens * H * sizeof *pm->embd);
        r += (size_t)items[i].n_tokens;
    }
    for (size_t i = 0; i < n_ids; i++) {
        pm->tags[i] = -1;
        if (ids[i] != tok[0] && (tok[1] < 0 || ids[i] != tok[1])) continue;
        while (cur < n && used == (size_t)items[cur].n_tokens) cur++, used = 0;
        if (cur == n || ids[i] != tok[items[cur].kind]) {
            media_free(pm);
            return fail("the prompt's image and video tokens do not match its media (%zu rows)", rows);
        }
        pm->tags[i] = items[cur].serial;
        used++;
    }
    pm->n_rows = rows;
    return 0;
}

/* Tokenizes a rendered prompt whose placeholders stand for items (in order). */
int tokenize_with_media(const tw_model *m, const char *prompt, const cli_media *items, size_t n,
                               int32_t **ids, size_t *n_ids) {
    int32_t *counts = malloc((n ? n : 1) * sizeof *counts);
    if (!counts) return fail("out of memory");
    for (size_t i = 0; i < n; i++) counts[i] = items[i].n_tokens;
    tw_status st = tw_tokenize_prompt(m, prompt, strlen(prompt), counts, n, ids, n_ids);
    free(counts);
    return st == TW_OK ? 0 : fail_lib();
}

/* The prompt (n tokens, some for media) must leave room for at least one more token. With a
** video, says how many tokens it takes and how many frames would fit. */
int check_fits(const tw_seq *seq, size_t n, const cli_media *items, size_t n_items) {
    int32_t n_ctx = tw_seq_n_ctx(seq);
    if ((int64_t)n < n_ctx || !n_items) return 0;   /* generate_turn says it for text */
    size_t img_tok = 0, n_img = 0, vid_tok = 0, n_vid = 0, frames = 0;
    for (size_t i = 0; i < n_items; i++) {
        if (items[i].kind == MEDIA_IMAGE) img_tok += (size_t)items[i].n_tokens, n_img++;
        else vid_tok += (size_t)items[i].n_tokens, n_vid++, frames += (size_t)tw_video_n_frames(items[i].vid);
    }
    if (!n_vid)
        return fail("the prompt has %zu tokens (%zu of them for %zu image(s)) but the context holds %d: use fewer or "
                    "smaller images, a shorter prompt, or raise --ctx", n, img_tok, n_img, n_ctx);
    /* tokens per frame; the rest of the prompt and one newline per video stay */
    size_t per = (vid_tok - n_vid) / (frames ? frames : 1), fixed = n - vid_tok + n_vid;
    long fit = (int64_t)fixed + 1 <= n_ctx ? (long)(((size_t)n_ctx - 1 - fixed) / (per ? per : 1) / n_vid) : 0;
    char hint[64], imgs[64] = "";
    if (fit >= 1) snprintf(hint, sizeof hint, "use fewer frames (--frames %ld fits)", fit);
    else snprintf(hint, sizeof hint, "shorten the prompt");
    if (n_img) snprintf(imgs, sizeof imgs, ", the image(s) %zu", img_tok);
    return fail("the prompt has %zu tokens but the context holds %d: the video%s take%s %zu (%zu frames x %zu + %zu)%s; "
                "%s or raise --ctx", n, n_ctx, n_vid > 1 ? "s" : "", n_vid > 1 ? "" : "s", vid_tok, frames, per, n_vid,
                imgs, hint);
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
    size_t total;         /* bytes seen (without stops)           */
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
        s->total += len;
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

static const char *stop_reason_name(int r) {
    switch (r) {
    case 0: return "max tokens";
    case 1: return "stop token";
    case 2: return "stop string";
    case 3: return "context full";
    case 4: return "interrupted";
    default: return "?";
    }
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

/* Per cached position, the serial of the image whose features it holds (-1: text), for the
** first g_tags_len positions of the one sequence a command uses. Image tokens all have the same
** id, so ids alone cannot tell whether the cache holds the right image. */
static int32_t *g_tags;
static size_t   g_tags_len, g_tags_cap;

static int tags_record(const tw_seq *seq, const int32_t *tags, size_t n) {
    size_t pos = (size_t)tw_seq_pos(seq);
    if (pos > g_tags_cap) {
        int32_t *nt = realloc(g_tags, pos * 2 * sizeof *nt);
        if (!nt) { g_tags_len = 0; return fail("out of memory"); }
        g_tags = nt;
        g_tags_cap = pos * 2;
    }
    for (size_t i = 0; i < pos; i++) g_tags[i] = tags && i < n ? tags[i] : -1;
    g_tags_len = pos;
    return 0;
}

/* Evaluates ids on top of what seq already holds, reusing the longest cached prefix, then
** generates. pm (NULL for text) gives the image features of ids' image tokens. Output streams
** to stdout (unless print == 0); the result is in *res. *reused = prompt tokens found in the
** cache. */
int generate_turn(tw_seq *seq, const int32_t *ids, size_t n, const prompt_media *pm, size_t n_embd,
                         const tw_gen_params *gp, int print, int newline_safe, tw_gen_result *res, size_t *reused) {
    int32_t n_ctx = tw_seq_n_ctx(seq);
    if (n == 0) return fail("the prompt is empty");
    if ((int64_t)n >= n_ctx)
        return fail("the prompt has %zu tokens but the context holds %d: shorten the prompt or raise --ctx",
                    n, n_ctx);
    const int32_t *cached = tw_seq_tokens(seq);
    const int32_t *tags = pm ? pm->tags : NULL;
    size_t pos = (size_t)tw_seq_pos(seq), k = 0;
    while (k < n && k < pos && k < g_tags_len && cached[k] == ids[k] && g_tags[k] == (tags ? tags[k] : -1)) k++;
    if (k == n) k--;                        /* at least one new token, for fresh logits */
    if (tw_seq_rewind(seq, (int32_t)k) != TW_OK) return fail_lib();
    g_tags_len = k;
    *reused = k;
    tw_eval_opts eo = {0};
    if (tags && pm->n_rows) {
        size_t skip = 0;                    /* feature rows of the image tokens already cached */
        for (size_t i = 0; i < k; i++) skip += tags[i] >= 0;
        if (skip < pm->n_rows) {
            eo.embd = pm->embd + skip * n_embd;
            eo.n_embd_rows = pm->n_rows - skip;
        }
    }

    stream s = {.print = print, .newline_safe = newline_safe};
    struct sigaction sa = {.sa_handler = on_sigint}, old;
    sigemptyset(&sa.sa_mask);
    g_interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    tw_status st = tw_generate(seq, ids + k, n - k, &eo, gp, on_token, &s, res);
    sigaction(SIGINT, &old, NULL);
    if (st != TW_OK) {
        free(s.acc);
        fail_lib();
        tw_seq_rewind(seq, (int32_t)k);     /* what the failed call left is not known */
        return 1;
    }
    if (tags_record(seq, tags, n)) { free(s.acc); tw_gen_result_free(res); return 1; }
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
/* Prompts of run and translate                                                                 */

/* Renders [system?, user] (or takes the text as is with --raw) and tokenizes it without specials;
** the user text's "<image>" / "<video>" placeholders stand for imgs, in order. */
int build_prompt(tw_model *m, const char *user, int raw, const cli_media *imgs, size_t n_imgs, char **prompt,
                        int32_t **ids, size_t *n_ids) {
    if (raw) {
        *prompt = malloc(strlen(user) + 1);
        if (!*prompt) return fail("out of memory");
        strcpy(*prompt, user);
    } else {
        tw_message msgs[2];
        size_t n = 0;
        if (g.system) msgs[n++] = (tw_message){"system", g.system};
        msgs[n++] = (tw_message){"user", user};
        char *out = NULL;
        if (tw_chat_render(m, msgs, n, 1, &out) != TW_OK) return fail_lib();
        *prompt = out;
    }
    if (!ids) return 0;
    int rc = n_imgs ? tokenize_with_media(m, *prompt, imgs, n_imgs, ids, n_ids)
                    : tw_tokenize(tw_model_tokenizer(m), *prompt, strlen(*prompt), 0, ids, n_ids) != TW_OK ? fail_lib() : 0;
    if (rc) {
        tw_free(*prompt);
        *prompt = NULL;
    }
    return rc;
}

/* Renders, tokenizes and generates one prompt on seq; prints the reply (or ids) and a newline.
** The user text holds one placeholder per image / video of imgs (in prompt order, counted with
** media_count); media are encoded on first use. */
int one_shot(tw_model *m, tw_seq *seq, const char *user, int raw, int newline_safe, cli_media *imgs,
                    size_t n_imgs) {
    char *prompt = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, reused = 0;
    prompt_media pm = {0};
    int rc = build_prompt(m, user, raw, imgs, n_imgs, &prompt, &ids, &n_ids);
    if (rc) return rc;
    rc = check_fits(seq, n_ids, imgs, n_imgs);
    if (!rc) rc = media_encode(m, imgs, n_imgs);
    if (!rc) rc = media_build(m, ids, n_ids, imgs, n_imgs, &pm);
    if (rc) {
        tw_free(ids);
        tw_free(prompt);
        return rc;
    }
    tw_gen_params gp = gen_params(1024);
    tw_gen_result res = {0};
    rc = generate_turn(seq, ids, n_ids, n_imgs ? &pm : NULL, (size_t)tw_model_n_embd(m), &gp, !g.print_ids,
                       newline_safe, &res, &reused);
    media_free(&pm);
    if (!rc) {
        if (g.print_ids) print_ids_line(res.ids, res.n_ids);
        else putchar('\n');
        fflush(stdout);
        if (g.verbose) report_timing(n_ids, reused, &res);
        tw_gen_result_free(&res);
    }
    tw_free(ids);
    tw_free(prompt);
    return rc;
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

/* --image-tokens: loads the model and the media, prints each one's token count (images counted
** together, as one prompt's), exits. */
int image_tokens_only(void) {
    tw_model *m = NULL;
    cli_media *imgs = NULL;
    int rc = load_model(&m);
    if (!rc) rc = open_cli_media(m, &imgs);
    if (!rc) rc = media_count(m, imgs, n_cli_media());
    if (!rc) print_media_tokens(stdout, imgs, n_cli_media());
    close_media(imgs, n_cli_media());
    tw_model_free(m);
    return rc;
}

/* ============================================================================================ */
/* Media of a chat                                                                              */

/* src, or with frames (n_paths > 0) the --video-frame(s) list. */
int chat_attach(const tw_model *m, chat_media *ci, media_kind kind, const char *src, const char *const *frames,
                       size_t n_paths, int tty) {
    if (ci->n == ci->cap) {
        size_t cap = ci->cap ? ci->cap * 2 : 4;
        cli_media *nv = realloc(ci->v, cap * sizeof *nv);
        if (!nv) return fail("out of memory");
        ci->v = nv;
        ci->cap = cap;
    }
    if (kind == MEDIA_IMAGE ? image_open(m, src, &ci->v[ci->n]) : video_open(m, src, frames, n_paths, &ci->v[ci->n]))
        return 1;
    const cli_media *im = &ci->v[ci->n++];
    ci->n_pending++;
    if (tty || g.verbose) {
        char buf[64];
        if (kind == MEDIA_IMAGE)
            fprintf(stderr, "[image %s: %dx%d, %d tokens; attached to your next message]\n",
                    media_label(im->src, buf, sizeof buf), tw_image_width(im->im), tw_image_height(im->im), im->n_tokens);
        else
            fprintf(stderr, "[video %s: %d frames of %dx%d, %d tokens; attached to your next message]\n",
                    media_label(im->src, buf, sizeof buf), tw_video_n_frames(im->vid), im->vid->width, im->vid->height,
                    im->n_tokens);
    }
    return 0;
}

void chat_drop_media(chat_media *ci, size_t keep) {
    while (ci->n > keep) media_close(&ci->v[--ci->n]);
    if (ci->n_pending > ci->n) ci->n_pending = ci->n;
}

/* ============================================================================================ */
/* dump: the image and video paths step by step                                                 */

void dump_image_free(dump_image *d) {
    free(d->pixels);
    free(d->hidden);
    free(d->selected);
    free(d->projected);
}

/* Runs the image path step by step, keeping every intermediate: preprocess, SigLIP (all hidden
** states), projector, packing into ci->embd. */
int dump_vision(const tw_model *m, cli_media *ci, size_t index, dump_image *d) {
    double t0 = now_ms();
    int32_t n_tiles = 0;
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer;
    if (tw_anyres_plan_make(tw_image_height(ci->im), tw_image_width(ci->im), m->pinpoints, m->n_pinpoints,
                            m->vision.image_size, m->vision.patch_size,
                            m->arch == TW_ARCH_LLAVA_ONEVISION ? m->max_num_patches : 0, &d->plan) != TW_OK ||
        tw_image_preprocess(m, ci->im, &d->pixels, &n_tiles) != TW_OK)
        return fail_lib();
    const tw_anyres_plan *p = &d->plan;
    if (n_tiles != p->n_tiles || p->n_tokens != ci->n_tokens)
        return fail("image %zu: the plan gives %d tiles / %d tokens, preprocessing %d tiles, the prompt %d tokens",
                    index + 1, p->n_tiles, p->n_tokens, n_tiles, ci->n_tokens);
    size_t nt = (size_t)n_tiles * (size_t)N;
    d->hidden = malloc((size_t)(Lv + 1) * nt * (size_t)C * sizeof(float));
    d->selected = malloc(nt * (size_t)C * sizeof(float));
    d->projected = malloc(nt * (size_t)H * sizeof(float));
    ci->embd = malloc((size_t)p->n_tokens * (size_t)H * sizeof(float));
    if (!d->hidden || !d->selected || !d->projected || !ci->embd)
        return fail("out of memory (image %zu: %d tiles)", index + 1, n_tiles);
    if (tw_siglip_forward(m, d->pixels, n_tiles, d->selected, d->hidden) != TW_OK ||
        tw_projector_forward(m, d->selected, (int64_t)nt, d->projected) != TW_OK ||
        tw_pack_image(m, p, d->projected, ci->embd) != TW_OK)
        return fail_lib();
    if (g.verbose)
        fprintf(stderr, "[dump: image %zu: %dx%d, %dx%d tiles + base, %d tokens, vision in %.1f ms]\n", index + 1,
                tw_image_width(ci->im), tw_image_height(ci->im), p->rows, p->cols, p->n_tokens, now_ms() - t0);
    return 0;
}

void dump_video_free(dump_video *d) {
    free(d->resized);
    free(d->pixels);
    free(d->hidden);
    free(d->selected);
    free(d->projected);
}

/* The video path step by step: resize, normalise, SigLIP per frame (all hidden states),
** projector, pooling + newline into ci->embd. */
int dump_video_run(const tw_model *m, cli_media *ci, size_t index, dump_video *d) {
    double t0 = now_ms();
    const tw_video *v = ci->vid;
    int32_t F = v->n_frames, G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m),
            Lv = m->vision.n_layer, S = m->vision.image_size, oh = 0, ow = 0;
    const tw_video_preproc *vp = &m->video_preproc;
    if (tw_video_resize(vp, v, &d->resized, &oh, &ow) != TW_OK || tw_video_preprocess(vp, v, &d->pixels, &oh, &ow) != TW_OK)
        return fail_lib();
    if (oh != S || ow != S)
        return fail("video %zu: the video processor makes %dx%d frames, the vision tower takes %dx%d", index + 1, ow, oh,
                    S, S);
    d->S = S;
    size_t nt = (size_t)F * (size_t)N;
    d->hidden = malloc((size_t)(Lv + 1) * nt * (size_t)C * sizeof(float));
    d->selected = malloc(nt * (size_t)C * sizeof(float));
    d->projected = malloc(nt * (size_t)H * sizeof(float));
    ci->embd = malloc((size_t)ci->n_tokens * (size_t)H * sizeof(float));
    if (!d->hidden || !d->selected || !d->projected || !ci->embd)
        return fail("out of memory (video %zu: %d frames)", index + 1, F);
    if (tw_siglip_forward(m, d->pixels, F, d->selected, d->hidden) != TW_OK ||
        tw_projector_forward(m, d->selected, (int64_t)nt, d->projected) != TW_OK ||
        tw_pool_video(m, d->projected, F, ci->embd) != TW_OK)
        return fail_lib();
    if (g.verbose)
        fprintf(stderr, "[dump: video %zu: %d frames of %dx%d -> %dx%d, %d tokens, vision in %.1f ms]\n", index + 1, F,
                v->width, v->height, S, S, ci->n_tokens, now_ms() - t0);
    return 0;
}
