/*
** cmd_chat.c — `tower chat`: interactive multi-turn chat, one message per stdin line. The KV cache
** is kept between turns (only the new part of the conversation is evaluated); /image and /video
** attach media to the next message (tools/media.c).
*/
#include "commands.h"
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

void tower_help_chat(void) {
    printf("usage: tower chat -m MODEL [options]\n\n"
           "Interactive multi-turn chat. Each line read from stdin is one user message (end a line with\n"
           "'\\' to continue the message on the next line). Works on a terminal and with piped input.\n"
           "The KV cache is kept between turns: only the new part of the conversation is evaluated.\n"
           "Ctrl-C stops the current reply; Ctrl-D (end of input) or /exit leaves.\n\n"
           "commands:\n"
           "  /exit          leave\n"
           "  /reset         forget the conversation (the system message is kept)\n"
           "  /system TEXT   set the system message (empty TEXT removes it)\n"
           "  /image SRC     attach an image (file, data: or http(s) URL) to the next message; its\n"
           "                 <image> goes at the start of that message (or where the message says\n"
           "                 <image>). Earlier images stay in the conversation and in the KV cache.\n"
           "  /video SRC     attach a video (file, directory of frames or URL; --frames N sampled) to the\n"
           "                 next message, like /image (<video> placeholder; TowerVideo checkpoints)\n"
           "  /help          this list\n\n"
           "  --image SRC    attach an image to the first message, as /image does (repeatable)\n"
           "  --video SRC, --video-frames F1,F2,..., --frames N   a video for the first message\n\n"
           HELP_SAMPLING_OPTS "\n" HELP_MODEL_OPTS "\n"
           "examples:\n"
           "  tower chat -m utter-project/TowerVision-2B\n"
           "  printf 'Hi!\\nTranslate your answer to German.\\n' | tower chat -m ./TowerVision-2B -v\n");
}

/* The conversation: turns (role, text) and the media attached to user turns, in order. The
** prompt is rebuilt from it every turn (tw_prompt_from_chat); the library reuses the KV cache as
** far as the conversation and its media are unchanged. */
typedef struct turn {
    char  *role, *text;
    size_t media_first, n_media;   /* its media: media[media_first ...] */
} turn;

typedef struct convo {
    turn      *t;
    size_t     n, cap;
    cli_media *media;
    size_t     n_media, cap_media;
    size_t     n_pending;          /* the last n_pending media go with the next user message */
} convo;

static int convo_push(convo *c, const char *role, const char *text, size_t at, size_t n_media) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        turn *nt = realloc(c->t, cap * sizeof *nt);
        if (!nt) return -1;
        c->t = nt;
        c->cap = cap;
    }
    char *r = xstrdup(role), *x = xstrdup(text);
    if (!r || !x) { free(r); free(x); return -1; }
    memmove(&c->t[at + 1], &c->t[at], (c->n - at) * sizeof c->t[0]);
    c->t[at] = (turn){r, x, c->n_media - n_media, n_media};
    c->n++;
    return 0;
}

static void drop_media(convo *c, size_t keep) {
    while (c->n_media > keep) media_close(&c->media[--c->n_media]);
    if (c->n_pending > c->n_media) c->n_pending = c->n_media;
}

static void convo_drop(convo *c, size_t at) {
    free(c->t[at].role);
    free(c->t[at].text);
    memmove(&c->t[at], &c->t[at + 1], (c->n - at - 1) * sizeof c->t[0]);
    c->n--;
}

static void convo_free(convo *c) {
    while (c->n) convo_drop(c, c->n - 1);
    free(c->t);
    drop_media(c, 0);
    free(c->media);
}

static int has_system(const convo *c) { return c->n && strcmp(c->t[0].role, "system") == 0; }

/* Opens an image or video for the next message (src, or a --video-frame(s) list). */
static int attach(const tw_model *m, convo *c, tw_media_kind kind, const char *src, const char *const *frames,
                  size_t n_paths, int tty) {
    if (c->n_media == c->cap_media) {
        size_t cap = c->cap_media ? c->cap_media * 2 : 4;
        cli_media *nv = realloc(c->media, cap * sizeof *nv);
        if (!nv) return fail("out of memory");
        c->media = nv;
        c->cap_media = cap;
    }
    cli_media *ci = &c->media[c->n_media];
    if (media_open(m, kind, src, frames, n_paths, ci)) return 1;
    c->n_media++;
    c->n_pending++;
    if (tty || g.verbose) {
        char buf[64];
        int32_t n_tok = 0;
        const char *label = media_label(ci->src, buf, sizeof buf);
        if (kind == TW_MEDIA_IMAGE) {
            tw_image_n_tokens(m, tw_image_width(ci->im), tw_image_height(ci->im), &n_tok);
            fprintf(stderr, "[image %s: %dx%d, %d tokens; attached to your next message]\n", label,
                    tw_image_width(ci->im), tw_image_height(ci->im), n_tok);
        } else {
            tw_video_n_tokens(m, tw_video_n_frames(ci->vid), &n_tok);
            fprintf(stderr, "[video %s: %d frames of %dx%d, %d tokens; attached to your next message]\n", label,
                    tw_video_n_frames(ci->vid), tw_video_width(ci->vid), tw_video_height(ci->vid), n_tok);
        }
    }
    return 0;
}

/* The conversation as chat messages with parts (media first, then the text: the library places
** them), into one prompt. */
static int build(tw_model *m, const convo *c, tw_prompt **out) {
    tw_chat_message *msgs = calloc(c->n ? c->n : 1, sizeof *msgs);
    tw_part *parts = calloc(c->n + c->n_media + 1, sizeof *parts);
    if (!msgs || !parts) { free(msgs); free(parts); return fail("out of memory"); }
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        const turn *t = &c->t[i];
        msgs[i] = (tw_chat_message){t->role, parts + k, t->n_media + 1};
        for (size_t j = 0; j < t->n_media; j++) {
            const cli_media *ci = &c->media[t->media_first + j];
            parts[k++] = ci->kind == TW_MEDIA_IMAGE ? (tw_part){TW_PART_IMAGE, NULL, ci->im, NULL}
                                                    : (tw_part){TW_PART_VIDEO, NULL, NULL, ci->vid};
        }
        parts[k++] = (tw_part){TW_PART_TEXT, t->text, NULL, NULL};
    }
    tw_status st = tw_prompt_from_chat(m, msgs, c->n, 1, out);
    free(msgs);
    free(parts);
    return st == TW_OK ? 0 : fail_lib();
}

/* Reads one message: a line, continued on the next while it ends in '\'. NULL at end of input. */
static char *read_message(int tty) {
    char *msg = NULL, *line = NULL;
    size_t mlen = 0, cap = 0;
    for (;;) {
        if (tty) { fputs(msg ? ". " : "> ", stdout); fflush(stdout); }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        int cont = n && line[n - 1] == '\\';
        if (cont) line[--n] = 0;
        char *nm = realloc(msg, mlen + (size_t)n + 2);
        if (!nm) break;
        msg = nm;
        if (mlen) msg[mlen++] = '\n';
        memcpy(msg + mlen, line, (size_t)n + 1);
        mlen += (size_t)n;
        if (!cont) break;
    }
    free(line);
    if (!msg && tty) putchar('\n');
    return msg;
}

int tower_cmd_chat(int argc, char **argv) {
    parse_options(argc, argv, C_CHAT, tower_help_chat);
    require_model();
    for (size_t i = 0; i < g.n_images; i++)
        if (!strcmp(g.images[i], "-")) usage_error("chat reads messages from stdin: --image - is not possible here");
    for (size_t i = 0; i < g.n_videos; i++)
        if (!strcmp(g.videos[i], "-")) usage_error("--video cannot read stdin: give a file, directory or URL");
    tw_model *m = NULL;
    tw_seq *seq = NULL;
    tw_media_cache *cache = NULL;
    int rc = load_model(&m);
    if (rc) return rc;
    if (tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK ||
        tw_media_cache_new(m, 0, &cache) != TW_OK) {
        rc = fail_lib();
        tw_seq_free(seq);
        tw_model_free(m);
        return rc;
    }
    int tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "tower chat: %s. Type a message and press Enter; /help lists commands.\n", g.model);

    convo c = {0};
    if (g.system && convo_push(&c, "system", g.system, 0, 0)) rc = fail("out of memory");
    for (size_t i = 0; !rc && i < g.n_images; i++) rc = attach(m, &c, TW_MEDIA_IMAGE, g.images[i], NULL, 0, tty);
    for (size_t i = 0; !rc && i < g.n_videos; i++) rc = attach(m, &c, TW_MEDIA_VIDEO, g.videos[i], NULL, 0, tty);
    if (!rc && g.n_frame_paths)
        rc = attach(m, &c, TW_MEDIA_VIDEO, NULL, (const char *const *)g.frame_paths, g.n_frame_paths, tty);
    int errors = 0;
    char *msg;
    while (!rc && (msg = read_message(tty)) != NULL) {
        if (!*msg) { free(msg); continue; }
        if (msg[0] == '/') {
            if (!strcmp(msg, "/exit") || !strcmp(msg, "/quit")) { free(msg); break; }
            if (!strcmp(msg, "/help")) {
                printf("/exit  leave\n/reset  forget the conversation (keeps the system message)\n"
                       "/system TEXT  set the system message (empty: remove)\n"
                       "/image PATH  attach an image (file, data: or http(s) URL) to your next message\n"
                       "/video PATH  attach a video (file, directory of frames or URL; --frames N sampled)\n"
                       "/help  this list\n");
            } else if (!strcmp(msg, "/reset")) {
                while (c.n > (size_t)has_system(&c)) convo_drop(&c, c.n - 1);
                drop_media(&c, 0);
                if (tw_seq_rewind(seq, 0) != TW_OK) rc = fail_lib();
                if (tty) fprintf(stderr, "[conversation cleared]\n");
            } else if (!strncmp(msg, "/system", 7) && (msg[7] == ' ' || !msg[7])) {
                const char *t = msg + 7;
                while (*t == ' ') t++;
                if (has_system(&c)) convo_drop(&c, 0);
                if (*t && convo_push(&c, "system", t, 0, 0)) rc = fail("out of memory");
                if (tty) fprintf(stderr, "[system message %s]\n", *t ? "set" : "removed");
            } else if ((!strncmp(msg, "/image", 6) || !strncmp(msg, "/video", 6)) && (msg[6] == ' ' || !msg[6])) {
                tw_media_kind kind = msg[1] == 'i' ? TW_MEDIA_IMAGE : TW_MEDIA_VIDEO;
                char *t = msg + 6;
                while (*t == ' ') t++;
                size_t tl = strlen(t);
                while (tl && t[tl - 1] == ' ') t[--tl] = 0;
                if (!*t) fprintf(stderr, "tower chat: /%s needs a path or URL\n", k_kind_name[kind]), errors++;
                else if (attach(m, &c, kind, t, NULL, 0, tty)) errors++;
            } else {
                fprintf(stderr, "tower chat: unknown command '%s' (/help lists them)\n", msg);
            }
            free(msg);
            continue;
        }
        /* the pending media go with this message: where it says "<image>" / "<video>", or first */
        size_t n_before = c.n_media - c.n_pending;
        if (convo_push(&c, "user", msg, c.n, c.n_pending)) {
            free(msg);
            rc = fail("out of memory");
            break;
        }
        free(msg);
        tw_prompt *p = NULL;
        size_t reused = 0;
        tw_gen_params gp = gen_params(1024);
        tw_gen_result res = {0};
        int trc = build(m, &c, &p);
        if (!trc) trc = generate_prompt(seq, p, cache, c.media, c.n_media, &gp, 1, 0, &res, &reused);
        if (trc) {
            convo_drop(&c, c.n - 1);   /* the message did not fit: forget it (and its media), keep chatting */
            drop_media(&c, n_before);
            errors++;
        } else {
            c.n_pending = 0;
            putchar('\n');
            fflush(stdout);
            if (g.verbose) report_timing(tw_prompt_n_tokens(p), reused, &res);
            if (convo_push(&c, "assistant", res.text ? res.text : "", c.n, 0)) rc = fail("out of memory");
            tw_gen_result_free(&res);
        }
        tw_prompt_free(p);
    }
    convo_free(&c);
    tw_media_cache_free(cache);
    tw_seq_free(seq);
    tw_model_free(m);
    return rc ? rc : errors ? 1 : 0;
}
