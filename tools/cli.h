/*
** cli.h — the shared part of the `tower` commands (tools/cli.c): the option set every command
** parses through parse_options, prompt reading, model loading, messages and exit codes.
*/
#ifndef TOWER_CLI_H
#define TOWER_CLI_H

#include "tower.h"

#include <stdio.h>

/* ---- messages and small helpers ---- */

extern const char *g_cmd;        /* "tower run", ... for messages */

double now_ms(void);
/* Usage mistake: reason + hint on stderr, exit 2. */
__attribute__((noreturn, format(printf, 1, 2))) void usage_error(const char *fmt, ...);
/* Runtime failure detected by the CLI itself: message on stderr, returns exit code 1. */
__attribute__((format(printf, 1, 2))) int fail(const char *fmt, ...);
/* A library call failed: its message, exit code 1. */
int   fail_lib(void);
long  parse_long(const char *opt, const char *s, long lo, long hi);
float parse_float(const char *opt, const char *s, float lo, float hi);
int   read_stream(FILE *f, char **data, size_t *len);
int   read_path(const char *path, char **data, size_t *len);
void  print_piece(FILE *f, const char *p, size_t n);
char *xstrdup(const char *s);

/* ---- progress of a long job over items (translate --dataset) ---- */

/* A one-line bar on stderr, drawn only when stderr is a terminal, at most 5 times a second:
**   LABEL [#######      ] DONE/TOTAL items  X items/s  Y tok/s  ETA 3m12s  EXTRA */
typedef struct cli_progress {
    int    tty;
    double t0, last;      /* ms: start, last drawn */
} cli_progress;

void progress_start(cli_progress *p);
void progress_draw(cli_progress *p, int force, const char *label, size_t done, size_t total, double tokens,
                   const char *extra);
void progress_clear(const cli_progress *p);   /* before printing a message under the bar */
void format_duration(char *buf, size_t cap, double seconds);   /* "42.0s", "3m12s", "2h05m" */

/* ---- options ---- */

enum {
    C_RUN = 1, C_CHAT = 2, C_TRANSLATE = 4, C_TOKENIZE = 8, C_DUMP = 16, C_INFO = 32, C_QUANTIZE = 64,
    C_BENCH = 128, C_SERVE = 256,
    C_GEN = C_RUN | C_CHAT | C_TRANSLATE,
    C_ALL = 511,
};

/* Everything any subcommand can be told. Global so a usage exit leaves nothing unreachable. */
typedef struct cli {
    unsigned    cmd;              /* C_* of the running subcommand                   */
    const char *model;
    const char *prompt;           /* -p TEXT ("-": stdin)                             */
    const char *prompt_file;      /* -f FILE                                          */
    const char *system;
    int32_t     max_new;          /* -n                                               */
    int         max_new_set;
    tw_sampler_params sp;
    char      **stops;            /* unescaped --stop strings                         */
    size_t      n_stops;
    int         ignore_eos;
    int         raw, final_softcap, offline, verbose, print_ids, show_prompt;
    int         n_threads;
    int32_t     n_ctx;
    tw_kv_type  kv_type;
    const char *chat_template;
    const char *tokenizer_dir;    /* --tokenizer DIR                                  */
    const char *from, *to;
    int         list_languages, lines;
    /* translate --dataset (docs/cli.md, "Translating datasets") */
    const char *dataset, *out_dir, *text_field, *score_field;
    double      min_score;
    int         min_score_set, on_error_skip, resume, force, drop_flagged;
    long        limit;            /* --limit N items this run (0: all)                */
    int         no_special, jsonl, ids_only;
    const char *out, *check_against;
    const char **images;          /* --image sources, in the order given              */
    size_t      n_images;
    int         image_tokens;     /* --image-tokens: print the counts and exit        */
    const char **videos;          /* --video sources, in the order given              */
    size_t      n_videos;
    char      **frame_paths;      /* --video-frames / --video-frame: one more video   */
    size_t      n_frame_paths;
    int32_t     n_frames;         /* --frames: frames sampled per video (0: all)      */
    int         kv_type_set;      /* --kv-type given (bench's default is f16)         */
    const char *type;             /* --type: a weight type (quantize, bench)          */
    int         quiet;            /* -q: quantize prints only the summary             */
    int         keep_vision, keep_embed;   /* quantize --keep-vision-bf16 / --keep-embed-bf16 */
    const char *shape;            /* bench --shape 2b|9b|all                          */
    const char *json;             /* bench --json FILE                                */
    const char *matmul;           /* --matmul f32|bf16                                */
    const char *kernels;          /* --kernels ref|avx2|avx512|amx                    */
    int         reps, n_decode, n_batch, n_distinct, quick, skip_vision, skip_ttft, skip_2b, skip_9b;   /* bench;
                                  ** n_batch also translate --dataset's sequences */
    int         limits_only;      /* bench --limits: the machine's limits, no model       */
    /* serve (docs/server.md) */
    const char *host, *api_key, *media_dir, *cors;
    int         port, parallel, cache_seqs, max_queue, max_media, max_conn, timeout_s;
    long        max_body_kb, cache_mb, media_cache_mb, max_media_mb, fetch_timeout_s;
    int32_t     max_tokens, prefill_chunk;
    uint64_t    max_pixels;
} cli;

extern cli g;

/* Parses argv (argv[0] = subcommand name) into g for command cmd (C_*); help() prints the
** command's help for -h. Positional arguments are not accepted. */
void parse_options(int argc, char **argv, unsigned cmd, void (*help)(void));
void free_options(void);
int  blank(const char *s);
/* The prompt text: -p TEXT, -p - or -f - (stdin), -f FILE, or stdin when it is not a terminal. */
int  read_prompt(char **text, size_t *len);

/* ---- model loading ---- */

tw_model_params model_params(void);
int require_model(void);
int load_model(tw_model **m);

/* ---- help texts shared by run, chat and translate ---- */

#define HELP_MODEL_OPTS \
    "model options:\n" \
    "  -m, --model MODEL        checkpoint directory or org/name[@rev] (default: $TOWER_MODEL); or\n" \
    "                           random:2b|9b[:bf16|q8|q4]: random weights of those shapes (needs --tokenizer)\n" \
    "  -t, --threads N          worker threads (default 0: every core)\n" \
    "      --offline            never use the network (also HF_HUB_OFFLINE=1)\n" \
    "      --chat-template FILE use this Jinja chat template instead of the checkpoint's\n" \
    "      --tokenizer DIR      tokenizer, chat template and stop ids from DIR instead of the checkpoint's\n" \
    "      --no-final-softcap   no final logit soft-capping (transformers >= 4.52 behaviour)\n" \
    "      --final-softcap      apply 30*tanh(logits/30) (as trained; default: as config.json says)\n" \
    "      --ctx N              context size in tokens (default: the model's max_position_embeddings)\n" \
    "      --kv-type T          KV cache element type: f32 (default, exact), f16 or bf16 (half the memory)\n" \
    "      --kernels PATH       kernel path: ref, avx2, avx512 or amx (default: the best this CPU runs;\n" \
    "                           TOWER_KERNELS overrides)\n" \
    "      --matmul f32|bf16    matrix products with f32 activations (default, exact) or rounded to bf16\n" \
    "                           (AVX512-BF16/AMX only: faster, not within the f32 tolerances; TOWER_MATMUL overrides)\n"

#define HELP_SAMPLING_OPTS \
    "generation options (default: greedy, stop on the model's end-of-turn token):\n" \
    "  -n, --max-new-tokens N   generate at most N tokens (default 1024; 0: until a stop or the context is full)\n" \
    "      --temp T             temperature; 0 = greedy (default 0)\n" \
    "      --top-k K            keep the K most likely tokens (0: off)\n" \
    "      --top-p P            nucleus sampling (1: off)\n" \
    "      --min-p P            drop tokens below P x the best probability (0: off)\n" \
    "      --repeat-penalty R   HF repetition penalty (1: off)\n" \
    "      --presence-penalty X, --frequency-penalty X   OpenAI-style penalties (0: off)\n" \
    "      --penalty-last-n N   tokens of history the penalties see (-1: all)\n" \
    "      --seed S             random seed for sampling (runs are repeatable)\n" \
    "      --stop STR           stop when the text contains STR (repeatable; \\n and \\t understood)\n" \
    "      --ignore-eos         do not stop on the model's stop tokens\n" \
    "      --system TEXT        system message (rendered by the chat template)\n" \
    "  -v, --verbose            timings and token counts on stderr\n"

#endif
