/*
** cmd_run.c — `tower run`: one-shot chat. The prompt becomes a user turn (after an optional
** --system turn), is rendered with the model's chat template, and the reply is streamed to stdout;
** --image / --video media go where the prompt says <image> / <video> (tools/media.c).
*/
#include "commands.h"
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tower_help_run(void) {
    printf("usage: tower run -m MODEL [-p PROMPT | -f FILE | < stdin] [options]\n\n"
           "One-shot chat: the prompt becomes a user turn (after an optional --system turn), is rendered\n"
           "with the model's chat template (which writes <bos>), tokenized without adding special tokens,\n"
           "and the reply is streamed to stdout as it is generated, followed by a newline.\n\n"
           "input:\n"
           "  -p, --prompt TEXT        the user message ('-': read stdin)\n"
           "  -f, --file FILE          read the user message from FILE ('-': stdin; also --prompt-file)\n"
           "                           with neither, stdin is read when it is not a terminal\n"
           "      --raw                no chat template: the text is tokenized exactly as given (write\n"
           "                           <bos> and the turn markers yourself if the model needs them)\n"
           "      --show-prompt        print the rendered prompt and exit (no model run)\n"
           "      --print-ids          print the generated token ids instead of the text\n\n"
           "images (vision models):\n"
           "      --image SRC          an image: file, '-' (stdin), data: URL or http(s) URL; repeatable.\n"
           "                           Each goes where the prompt says <image>, in order; a prompt without\n"
           "                           <image> gets one \"<image>\\n\" per image before its text (--raw:\n"
           "                           write them yourself). JPEG, PNG, WebP, GIF, BMP.\n"
           "      --image-tokens       print each image's / video's prompt tokens (tokens, size, source) and exit\n\n"
           "videos (TowerVideo checkpoints):\n"
           "      --video SRC          a video file (FFmpeg: MP4, WebM, MKV...), a directory of frame images, or\n"
           "                           an http(s) URL; repeatable. Each goes where the prompt says <video>;\n"
           "                           a prompt without <video> gets \"<video>\\n\" before its text, after the\n"
           "                           images' \"<image>\\n\" (TowerVideo's format: <image>\\n<video>\\nQuestion)\n"
           "      --frames N           frames sampled per video, evenly as transformers does (default 32, as\n"
           "                           TowerVideo was trained; 0: every frame); tokens = N * 196 + 1 on 2B\n"
           "      --video-frames F1,F2,...   a video given as frame images (paths or URLs), in order;\n"
           "      --video-frame F      the same, one frame per option (repeatable; paths with commas)\n\n"
           HELP_SAMPLING_OPTS "\n" HELP_MODEL_OPTS "\n"
           "examples:\n"
           "  tower run -m utter-project/TowerVision-2B -p \"Explain a KV cache in one sentence.\"\n"
           "  tower run -m ./TowerVideo-2B --video clip.mp4 --frames 16 -v -p \"Describe the video.\"\n"
           "  tower run -m ./TowerVideo-2B --image logo.png --video ad.webm -p \"Does the video show the logo?\"\n"
           "  tower run -m ./TowerVision-2B --image cat.jpg -p \"Describe the image in Portuguese.\"\n"
           "  tower run -m ./TowerVision-2B --image a.png --image b.png -p \"<image> vs <image>: what changed?\"\n"
           "  tower run -m ./TowerVision-2B -f question.txt -n 200 --temp 0.7 --top-p 0.9 --seed 1\n"
           "  cat prompt.txt | tower run -m ./TowerVision-2B --system \"Answer in Portuguese.\"\n");
}

int tower_cmd_run(int argc, char **argv) {
    parse_options(argc, argv, C_RUN, tower_help_run);
    require_model();
    check_image_usage();
    if (g.image_tokens) return image_tokens_only();
    char *text = NULL;
    size_t len = 0;
    if (read_prompt(&text, &len)) return 1;
    if (strlen(text) != len) { free(text); return fail("the prompt contains a NUL byte"); }
    size_t n_media = n_cli_media();
    if (blank(text) && !n_media) { free(text); return fail("the prompt is empty"); }
    tw_model *m = NULL;
    tw_seq *seq = NULL;
    cli_media *items = NULL;
    /* media go where the text has "<image>" / "<video>"; with none of a kind, one "<image>\n"
    ** per image then one "<video>\n" per video before the text (--raw: the text must place them
    ** itself, it starts with <bos>): the library's rule (tw_prompt_from_text) */
    int rc = load_model(&m);
    if (!rc && g.show_prompt) {
        rc = show_prompt(m, text, g.raw, g.n_images, n_cli_videos());
    } else if (!rc) {
        rc = open_cli_media(m, &items);
        if (!rc && tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) rc = fail_lib();
        if (!rc) rc = one_shot(m, seq, NULL, text, g.raw, 0, items, n_media);
    }
    close_media(items, n_media);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}
