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

typedef struct convo {
    tw_message *msgs;    /* role and content strings are owned (malloc'ed) */
    size_t      n, cap;
} convo;


static int convo_push(convo *c, const char *role, const char *content, size_t at) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        tw_message *nm = realloc(c->msgs, cap * sizeof *nm);
        if (!nm) return -1;
        c->msgs = nm;
        c->cap = cap;
    }
    char *r = xstrdup(role), *t = xstrdup(content);
    if (!r || !t) { free(r); free(t); return -1; }
    memmove(&c->msgs[at + 1], &c->msgs[at], (c->n - at) * sizeof c->msgs[0]);
    c->msgs[at] = (tw_message){r, t};
    c->n++;
    return 0;
}

static void convo_drop(convo *c, size_t at) {
    free((char *)c->msgs[at].role);
    free((char *)c->msgs[at].content);
    memmove(&c->msgs[at], &c->msgs[at + 1], (c->n - at - 1) * sizeof c->msgs[0]);
    c->n--;
}

static void convo_free(convo *c) {
    while (c->n) convo_drop(c, c->n - 1);
    free(c->msgs);
}

static int has_system(const convo *c) { return c->n && strcmp(c->msgs[0].role, "system") == 0; }

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
    int rc = load_model(&m);
    if (rc) return rc;
    if (tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) { tw_model_free(m); return fail_lib(); }
    int tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "tower chat: %s. Type a message and press Enter; /help lists commands.\n", g.model);

    convo c = {0};
    chat_media ci = {0};
    if (g.system && convo_push(&c, "system", g.system, 0)) rc = fail("out of memory");
    for (size_t i = 0; !rc && i < g.n_images; i++) rc = chat_attach(m, &ci, MEDIA_IMAGE, g.images[i], NULL, 0, tty);
    for (size_t i = 0; !rc && i < g.n_videos; i++) rc = chat_attach(m, &ci, MEDIA_VIDEO, g.videos[i], NULL, 0, tty);
    if (!rc && g.n_frame_paths)
        rc = chat_attach(m, &ci, MEDIA_VIDEO, NULL, (const char *const *)g.frame_paths, g.n_frame_paths, tty);
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
                chat_drop_media(&ci, 0);
                if (tw_seq_rewind(seq, 0) != TW_OK) rc = fail_lib();
                if (tty) fprintf(stderr, "[conversation cleared]\n");
            } else if (!strncmp(msg, "/system", 7) && (msg[7] == ' ' || !msg[7])) {
                const char *t = msg + 7;
                while (*t == ' ') t++;
                if (has_system(&c)) convo_drop(&c, 0);
                if (*t && convo_push(&c, "system", t, 0)) rc = fail("out of memory");
                if (tty) fprintf(stderr, "[system message %s]\n", *t ? "set" : "removed");
            } else if ((!strncmp(msg, "/image", 6) || !strncmp(msg, "/video", 6)) && (msg[6] == ' ' || !msg[6])) {
                media_kind kind = msg[1] == 'i' ? MEDIA_IMAGE : MEDIA_VIDEO;
                char *t = msg + 6;
                while (*t == ' ') t++;
                size_t tl = strlen(t);
                while (tl && t[tl - 1] == ' ') t[--tl] = 0;
                if (!*t) fprintf(stderr, "tower chat: /%s needs a path or URL\n", k_kind_name[kind]), errors++;
                else if (chat_attach(m, &ci, kind, t, NULL, 0, tty)) errors++;
            } else {
                fprintf(stderr, "tower chat: unknown command '%s' (/help lists them)\n", msg);
            }
            free(msg);
            continue;
        }
        /* pending media go where the message has "<image>" / "<video>", or all at its start */
        size_t n_before = ci.n - ci.n_pending, p_img = 0;
        for (size_t i = n_before; i < ci.n; i++) p_img += ci.v[i].kind == MEDIA_IMAGE;
        char *content = ci.n_pending ? place_media(msg, p_img, ci.n_pending - p_img, 1) : msg;
        if (!content || order_media(content, ci.v + n_before, ci.n_pending) || convo_push(&c, "user", content, c.n)) {
            if (content) rc = fail("out of memory");
            if (content != msg) free(content);
            free(msg);
            chat_drop_media(&ci, n_before);
            errors++;
            continue;
        }
        if (content != msg) free(content);
        free(msg);

        char *prompt = NULL;
        int32_t *ids = NULL;
        size_t n_ids = 0, reused = 0;
        prompt_media pm = {0};
        int trc = media_count(m, ci.v, ci.n);   /* a new image may change how the others count */
        if (!trc && tw_chat_render(m, c.msgs, c.n, 1, &prompt) != TW_OK) trc = fail_lib();
        if (!trc && ci.n) trc = tokenize_with_media(m, prompt, ci.v, ci.n, &ids, &n_ids);
        else if (!trc && tw_tokenize(tw_model_tokenizer(m), prompt, strlen(prompt), 0, &ids, &n_ids) != TW_OK)
            trc = fail_lib();
        if (!trc) trc = check_fits(seq, n_ids, ci.v, ci.n);
        if (!trc) trc = media_encode(m, ci.v, ci.n);
        if (!trc) trc = media_build(m, ids, n_ids, ci.v, ci.n, &pm);
        tw_gen_params gp = gen_params(1024);
        tw_gen_result res = {0};
        if (!trc) trc = generate_turn(seq, ids, n_ids, ci.n ? &pm : NULL, (size_t)tw_model_n_embd(m), &gp, 1, 0, &res,
                                      &reused);
        media_free(&pm);
        if (trc) {
            convo_drop(&c, c.n - 1);   /* the message did not fit: forget it (and its media), keep chatting */
            chat_drop_media(&ci, n_before);
            errors++;
        } else {
            ci.n_pending = 0;
            putchar('\n');
            fflush(stdout);
            if (g.verbose) report_timing(n_ids, reused, &res);
            if (convo_push(&c, "assistant", res.text ? res.text : "", c.n)) rc = fail("out of memory");
            tw_gen_result_free(&res);
        }
        tw_free(ids);
        tw_free(prompt);
    }
    convo_free(&c);
    chat_drop_media(&ci, 0);
    free(ci.v);
    tw_seq_free(seq);
    tw_model_free(m);
    return rc ? rc : errors ? 1 : 0;
}
