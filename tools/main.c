/*
** main.c — the `tower` program: dispatch to one command per file (tools/cmd_*.c), `tower --help`,
** `tower help COMMAND`, `tower --version`. Exit status of every command: 0 success, 1 error
** (message on stderr), 2 wrong usage. docs/cli.md describes every command and option.
*/
#include "commands.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void help_main(void) {
    printf("tower %s — run TowerVision / Tower+ models (Gemma2 text engine) on the CPU\n\n"
           "usage: tower COMMAND [options]\n\n"
           "commands:\n"
           "  run        one-shot chat: render the prompt with the model's chat template, generate, print\n"
           "  chat       interactive multi-turn chat (terminal or piped stdin, one message per line)\n"
           "  translate  translate text with the TowerVision paper's prompt (greedy)\n"
           "  tokenize   show the token ids and pieces of a text (or JSON lines with --jsonl)\n"
           "  dump       one forward pass: write ids, logits and hidden states to a .safetensors file\n"
           "  info       describe a model: architecture, sizes, dtypes, tokens, template, kernels\n"
           "  bench      speed and memory on random weights of the real 2B/9B shapes (or a checkpoint),\n"
           "             beside this machine's measured limits\n"
           "  quantize   write an 8-bit or 4-bit single-file copy of a checkpoint\n"
           "  serve      an OpenAI-compatible HTTP server (chat, completions with prompt logprobs,\n"
           "             images, video, streaming, batching, prefix cache)\n\n"
           "MODEL (-m) is a local checkpoint directory or a Hugging Face repo id org/name[@revision],\n"
           "found in the HF cache or downloaded (HF_ENDPOINT, HF_TOKEN; HF_HUB_OFFLINE=1 or --offline\n"
           "to stay offline). TOWER_MODEL sets a default for -m.\n\n"
           "examples:\n"
           "  tower run -m utter-project/TowerVision-2B -p \"Write a haiku about Lisbon.\"\n"
           "  tower run -m utter-project/TowerVision-2B --image photo.jpg -p \"What is in this picture?\"\n"
           "  tower run -m ./TowerVideo-2B --video clip.mp4 -p \"What happens in this video?\"\n"
           "  tower translate -m utter-project/TowerVision-2B --from en --to de -p \"Good morning!\"\n"
           "  echo 'Hello' | tower chat -m ./TowerVision-2B\n"
           "  tower tokenize -m ./TowerVision-2B -p \"Olá, mundo\"\n"
           "  tower info -m ./TowerVision-2B\n\n"
           "'tower COMMAND --help' describes each command; 'tower --version' shows the build.\n"
           "Exit status: 0 success, 1 error (message on stderr), 2 wrong usage.\n", TW_VERSION);
}

/* ============================================================================================ */
/* main                                                                                         */

static void print_version(void) {
    printf("tower %s\n", TW_VERSION);
    printf("build: %s\n", tw_build_info());
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        int (*fn)(int, char **);
        void (*help)(void);
    } cmds[] = {
        {"run", tower_cmd_run, tower_help_run},             {"chat", tower_cmd_chat, tower_help_chat},
        {"translate", tower_cmd_translate, tower_help_translate}, {"tokenize", tower_cmd_tokenize, tower_help_tokenize},
        {"dump", tower_cmd_dump, tower_help_dump},          {"info", tower_cmd_info, tower_help_info},
        {"bench", tower_cmd_bench, tower_help_bench}, {"quantize", tower_cmd_quantize, tower_help_quantize},
        {"serve", tower_cmd_serve, tower_help_serve},
    };
    static char label[64];
    if (argc < 2) {
        fprintf(stderr, "usage: tower COMMAND [options]   (commands: run, chat, translate, tokenize, dump, info, bench, quantize, serve)\n"
                        "Try 'tower --help' for more information.\n");
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help")) { help_main(); return 0; }
    if (!strcmp(c, "-V") || !strcmp(c, "--version") || !strcmp(c, "version")) { print_version(); return 0; }
    if (!strcmp(c, "help")) {
        if (argc < 3) { help_main(); return 0; }
        c = argv[2];
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
            if (!strcmp(c, cmds[i].name)) { cmds[i].help(); return 0; }
        usage_error("unknown command '%s'", c);
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(c, cmds[i].name) != 0) continue;
        snprintf(label, sizeof label, "tower %s", cmds[i].name);
        g_cmd = label;
        int rc = cmds[i].fn(argc - 1, argv + 1);
        free_options();
        return rc;
    }
    usage_error("unknown command '%s' (commands: run, chat, translate, tokenize, dump, info, bench, quantize, serve)", c);
}

