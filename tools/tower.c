/*
** tower.c — the `tower` command-line program: run, chat, translate, tokenize, dump, info.
**
** Everything the program does goes through the public API in include/tower.h; `dump` and
** `info` also use the safetensors writer/reader and the kernel report from src/, and `dump
** --image / --video` the vision internals (src/model/vision.h, src/media/video.h) to write every intermediate
** of the image and video paths. Images and videos (--image, --video, chat's /image and /video) are
** decoded and counted first, placed at the prompt's "<image>" / "<video>" placeholders (in order
** of appearance), encoded once (a prompt's images together: tw_images_encode), and their
** features passed, concatenated in prompt order, as tw_eval_opts.embd.
** This is the only place in the project that prints and exits:
**   - a failing library call prints "tower: error: <tw_last_error()>" on stderr, exit 1;
**   - a usage mistake prints a one-line reason and a hint on stderr, exit 2;
**   - stdout carries only the requested output (generated text, ids, JSON lines, reports).
**
** Sections: small helpers / options / model loading / media / generation / subcommands / main.
** See docs/cli.md for the user's view of every option.
*/
#include "tower.h"
#include "commands.h"   /* bench, quantize: tools/cmd_*.c */
#include "hub.h"
#include "kernels.h"
#include "quant.h"       /* info: a packed file's embedded files */
#include "safetensors.h"
#include "video.h"       /* struct tw_video (frames, indices); dump: frame preprocessing */
#include "vision.h"      /* dump: SigLIP hidden states, projector, packing, pooling (struct tw_model) */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>




/* ============================================================================================ */
/* Small helpers                                                                                */

static const char *g_cmd = "tower";        /* "tower run", ... for messages           */
static volatile sig_atomic_t g_interrupted; /* Ctrl-C during generation                */

static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Usage mistake: reason + hint on stderr, exit 2. */
__attribute__((noreturn, format(printf, 1, 2)))
static void usage_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", g_cmd);
    exit(2);
}

/* Runtime failure detected by the CLI itself: message on stderr, returns exit code 1. */
__attribute__((format(printf, 1, 2)))
static int fail(const char *fmt, ...) {
    va_list ap;
    fputs("tower: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* A library call failed: its message, exit code 1. */
static int fail_lib(void) { return fail("%s", tw_last_error()); }

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        usage_error("option %s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

static float parse_float(const char *opt, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        usage_error("option %s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}

/* Reads a whole stream; *data is NUL-terminated (the text may contain NULs too). */
static int read_stream(FILE *f, char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return -1;
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return -1; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) { free(buf); return -1; }
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

static int read_path(const char *path, char **data, size_t *len) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return fail("%s: is a directory, expected a text file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return fail("cannot open %s: %s", path, strerror(errno));
    int rc = read_stream(f, data, len);
    int err = errno;
    fclose(f);
    if (rc) return fail("cannot read %s: %s", path, strerror(err));
    return 0;
}

/* Interprets \n, \t, \r, \\ in a --stop argument (so --stop '\n\n' works from a shell). */
static char *unescape(const char *s) {
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            switch (*s) {
            case 'n': *o++ = '\n'; break;
            case 't': *o++ = '\t'; break;
            case 'r': *o++ = '\r'; break;
            case '\\': *o++ = '\\'; break;
            default: *o++ = '\\'; *o++ = *s; break;
            }
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
    return out;
}

/* Prints a vocabulary piece with control characters escaped so a table stays one line per token. */
static void print_piece(FILE *f, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\\') fputs("\\\\", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
}

/* ============================================================================================ */
/* Options                                                                                      */

enum {
    C_RUN = 1, C_CHAT = 2, C_TRANSLATE = 4, C_TOKENIZE = 8, C_DUMP = 16, C_INFO = 32,
    C_GEN = C_RUN | C_CHAT | C_TRANSLATE,
    C_ALL = 63,
};

enum {
    O_SYSTEM = 256, O_TEMP, O_TOP_K, O_TOP_P, O_MIN_P, O_REPEAT, O_PRESENCE, O_FREQUENCY,
    O_PENALTY_N, O_SEED, O_STOP, O_RAW, O_NO_SOFTCAP, O_SOFTCAP, O_TEMPLATE, O_OFFLINE, O_CTX, O_KV_TYPE,
    O_PRINT_IDS, O_SHOW_PROMPT, O_FROM, O_TO, O_LIST_LANG, O_LINES, O_NO_SPECIAL, O_JSONL, O_IDS,
    O_CHECK, O_IGNORE_EOS, O_IMAGE, O_IMAGE_TOKENS, O_VIDEO, O_VIDEO_FRAMES, O_VIDEO_FRAME, O_FRAMES,
};

typedef struct cli_opt {
    struct option o;
    unsigned      cmds;   /* C_* mask of the subcommands that accept it */
} cli_opt;

static const cli_opt k_opts[] = {
    {{"model", required_argument, 0, 'm'}, C_ALL},
    {{"prompt", required_argument, 0, 'p'}, C_RUN | C_TRANSLATE | C_TOKENIZE},
    {{"file", required_argument, 0, 'f'}, C_RUN | C_TRANSLATE | C_TOKENIZE | C_DUMP},
    {{"prompt-file", required_argument, 0, 'f'}, C_RUN | C_DUMP},
    {{"system", required_argument, 0, O_SYSTEM}, C_GEN},
    {{"max-new-tokens", required_argument, 0, 'n'}, C_GEN | C_DUMP},
    {{"temp", required_argument, 0, O_TEMP}, C_GEN},
    {{"temperature", required_argument, 0, O_TEMP}, C_GEN},
    {{"top-k", required_argument, 0, O_TOP_K}, C_GEN},
    {{"top-p", required_argument, 0, O_TOP_P}, C_GEN},
    {{"min-p", required_argument, 0, O_MIN_P}, C_GEN},
    {{"repeat-penalty", required_argument, 0, O_REPEAT}, C_GEN},
    {{"presence-penalty", required_argument, 0, O_PRESENCE}, C_GEN},
    {{"frequency-penalty", required_argument, 0, O_FREQUENCY}, C_GEN},
    {{"penalty-last-n", required_argument, 0, O_PENALTY_N}, C_GEN},
    {{"seed", required_argument, 0, O_SEED}, C_GEN},
    {{"stop", required_argument, 0, O_STOP}, C_GEN},
    {{"ignore-eos", no_argument, 0, O_IGNORE_EOS}, C_GEN},
    {{"raw", no_argument, 0, O_RAW}, C_RUN},
    {{"no-final-softcap", no_argument, 0, O_NO_SOFTCAP}, C_GEN | C_INFO},
    {{"final-softcap", no_argument, 0, O_SOFTCAP}, C_GEN | C_DUMP | C_INFO},
    {{"chat-template", required_argument, 0, O_TEMPLATE}, C_GEN | C_INFO},
    {{"threads", required_argument, 0, 't'}, C_GEN | C_DUMP | C_INFO},
    {{"offline", no_argument, 0, O_OFFLINE}, C_ALL},
    {{"ctx", required_argument, 0, O_CTX}, C_GEN | C_DUMP},
    {{"kv-type", required_argument, 0, O_KV_TYPE}, C_GEN | C_DUMP},
    {{"verbose", no_argument, 0, 'v'}, C_GEN | C_DUMP},
    {{"print-ids", no_argument, 0, O_PRINT_IDS}, C_RUN | C_TRANSLATE},
    {{"show-prompt", no_argument, 0, O_SHOW_PROMPT}, C_RUN | C_TRANSLATE},
    {{"from", required_argument, 0, O_FROM}, C_TRANSLATE},
    {{"to", required_argument, 0, O_TO}, C_TRANSLATE},
    {{"list-languages", no_argument, 0, O_LIST_LANG}, C_TRANSLATE},
    {{"lines", no_argument, 0, O_LINES}, C_TRANSLATE},
    {{"no-special", no_argument, 0, O_NO_SPECIAL}, C_TOKENIZE},
    {{"jsonl", no_argument, 0, O_JSONL}, C_TOKENIZE},
    {{"ids", no_argument, 0, O_IDS}, C_TOKENIZE},
    {{"output", required_argument, 0, 'o'}, C_DUMP},
    {{"check-against", required_argument, 0, O_CHECK}, C_DUMP},
    {{"image", required_argument, 0, O_IMAGE}, C_GEN | C_DUMP},
    {{"image-tokens", no_argument, 0, O_IMAGE_TOKENS}, C_RUN | C_TRANSLATE},
    {{"video", required_argument, 0, O_VIDEO}, C_GEN | C_DUMP},
    {{"video-frames", required_argument, 0, O_VIDEO_FRAMES}, C_GEN | C_DUMP},
    {{"video-frame", required_argument, 0, O_VIDEO_FRAME}, C_GEN | C_DUMP},
    {{"frames", required_argument, 0, O_FRAMES}, C_GEN | C_DUMP},
    {{"help", no_argument, 0, 'h'}, C_ALL},
};
#define N_OPTS (sizeof k_opts / sizeof k_opts[0])

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
    const char *from, *to;
    int         list_languages, lines;
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
} cli;

static cli g;

/* Parses argv (argv[0] = subcommand name) into g; positional arguments are not accepted. */
static void parse_options(int argc, char **argv, unsigned cmd, void (*help)(void)) {
    struct option longs[N_OPTS + 1];
    char shorts[64] = ":";     /* leading ':' so a missing argument is reported as ':' */
    size_t nl = 0, ns = 1;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (!(k_opts[i].cmds & cmd)) continue;
        longs[nl++] = k_opts[i].o;
        int c = k_opts[i].o.val;
        if (c < 256 && !strchr(shorts, c)) {
            shorts[ns++] = (char)c;
            if (k_opts[i].o.has_arg == required_argument) shorts[ns++] = ':';
        }
    }
    memset(&longs[nl], 0, sizeof longs[nl]);
    shorts[ns] = 0;

    g.cmd = cmd;
    g.sp = tw_sampler_default_params();
    g.final_softcap = cmd == C_DUMP ? 0 : -1;
    g.model = getenv("TOWER_MODEL");
    g.n_frames = 32;   /* as TowerVideo was trained */
    opterr = 0;
    optind = 1;
    for (;;) {
        int li = -1;
        int c = getopt_long(argc, argv, shorts, longs, &li);
        if (c == -1) break;
        char name[64];   /* the option as the user spelled it, for messages */
        if (li >= 0) snprintf(name, sizeof name, "--%s", longs[li].name);
        else if (c > 0 && c < 256 && c != '?' && c != ':') snprintf(name, sizeof name, "-%c", c);
        else snprintf(name, sizeof name, "%s", argv[optind - 1]);
        switch (c) {
        case 'h': help(); exit(0);
        case 'm': g.model = optarg; break;
        case 'p': g.prompt = optarg; break;
        case 'f': g.prompt_file = optarg; break;
        case 'n': g.max_new = (int32_t)parse_long(name, optarg, 0, 1 << 30); g.max_new_set = 1; break;
        case 't': g.n_threads = (int)parse_long(name, optarg, 0, 4096); break;
        case 'v': g.verbose = 1; break;
        case 'o': g.out = optarg; break;
        case O_SYSTEM: g.system = optarg; break;
        case O_TEMP: g.sp.temperature = parse_float(name, optarg, 0, 100); break;
        case O_TOP_K: g.sp.top_k = (int32_t)parse_long(name, optarg, 0, 1 << 30); break;
        case O_TOP_P: g.sp.top_p = parse_float(name, optarg, 0, 1); break;
        case O_MIN_P: g.sp.min_p = parse_float(name, optarg, 0, 1); break;
        case O_REPEAT: g.sp.repetition_penalty = parse_float(name, optarg, 0.01f, 100); break;
        case O_PRESENCE: g.sp.presence_penalty = parse_float(name, optarg, -100, 100); break;
        case O_FREQUENCY: g.sp.frequency_penalty = parse_float(name, optarg, -100, 100); break;
        case O_PENALTY_N: g.sp.penalty_last_n = (int32_t)parse_long(name, optarg, -1, 1 << 30); break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end) usage_error("option --seed: expected a non-negative integer, got '%s'", optarg);
            g.sp.seed = v;
            break;
        }
        case O_STOP: {
            char **ns2 = realloc(g.stops, (g.n_stops + 1) * sizeof *ns2);
            if (!ns2 || !(ns2[g.n_stops] = unescape(optarg))) { fputs("tower: error: out of memory\n", stderr); exit(1); }
            if (!ns2[g.n_stops][0]) usage_error("option --stop: the stop string is empty");
            g.stops = ns2;
            g.n_stops++;
            break;
        }
        case O_IGNORE_EOS: g.ignore_eos = 1; break;
        case O_RAW: g.raw = 1; break;
        case O_NO_SOFTCAP: g.final_softcap = 0; break;
        case O_SOFTCAP: g.final_softcap = 1; break;
        case O_TEMPLATE: g.chat_template = optarg; break;
        case O_OFFLINE: g.offline = 1; break;
        case O_CTX: g.n_ctx = (int32_t)parse_long(name, optarg, 1, 1 << 30); break;
        case O_KV_TYPE:
            if (tw_kv_type_parse(optarg, &g.kv_type) != TW_OK) usage_error("option --kv-type: expected f32, f16 or bf16, got '%s'", optarg);
            break;
        case O_PRINT_IDS: g.print_ids = 1; break;
        case O_SHOW_PROMPT: g.show_prompt = 1; break;
        case O_FROM: g.from = optarg; break;
        case O_TO: g.to = optarg; break;
        case O_LIST_LANG: g.list_languages = 1; break;
        case O_LINES: g.lines = 1; break;
        case O_NO_SPECIAL: g.no_special = 1; break;
        case O_JSONL: g.jsonl = 1; break;
        case O_IDS: g.ids_only = 1; break;
        case O_CHECK: g.check_against = optarg; break;
        case O_IMAGE: {
            const char **ni = realloc(g.images, (g.n_images + 1) * sizeof *ni);
            if (!ni) { fputs("tower: error: out of memory\n", stderr); exit(1); }
            if (!*optarg) usage_error("option --image: the path is empty");
            g.images = ni;
            g.images[g.n_images++] = optarg;
            break;
        }
        case O_IMAGE_TOKENS: g.image_tokens = 1; break;
        case O_VIDEO: {
            const char **nv = realloc(g.videos, (g.n_videos + 1) * sizeof *nv);
            if (!nv) { fputs("tower: error: out of memory\n", stderr); exit(1); }
            if (!*optarg) usage_error("option --video: the path is empty");
            g.videos = nv;
            g.videos[g.n_videos++] = optarg;
            break;
        }
        case O_VIDEO_FRAMES:
        case O_VIDEO_FRAME: {
            /* --video-frames splits at commas; --video-frame takes one path as is */
            for (const char *p = optarg;;) {
                size_t n = c == O_VIDEO_FRAMES ? strcspn(p, ",") : strlen(p);
                if (!n) usage_error("option %s: an empty frame path in '%s'", name, optarg);
                char **nf = realloc(g.frame_paths, (g.n_frame_paths + 1) * sizeof *nf);
                char *f = malloc(n + 1);
                if (!nf || !f) { fputs("tower: error: out of memory\n", stderr); exit(1); }
                memcpy(f, p, n);
                f[n] = 0;
                g.frame_paths = nf;
                g.frame_paths[g.n_frame_paths++] = f;
                if (!p[n]) break;
                p += n + 1;
            }
            break;
        }
        case O_FRAMES: g.n_frames = (int32_t)parse_long(name, optarg, 0, 4096); break;
        case ':':
            if (optopt && optopt < 256) usage_error("option '-%c' needs a value", optopt);
            usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < 256) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown option '%s'", name);
        }
    }
    if (optind < argc) usage_error("unexpected argument '%s' (text goes after -p, in quotes)", argv[optind]);
}

static void free_options(void) {
    for (size_t i = 0; i < g.n_stops; i++) free(g.stops[i]);
    free(g.stops);
    g.stops = NULL;
    g.n_stops = 0;
    free(g.images);
    g.images = NULL;
    g.n_images = 0;
    free(g.videos);
    g.videos = NULL;
    g.n_videos = 0;
    for (size_t i = 0; i < g.n_frame_paths; i++) free(g.frame_paths[i]);
    free(g.frame_paths);
    g.frame_paths = NULL;
    g.n_frame_paths = 0;
}

/* The prompt text: -p TEXT, -p - or -f - (stdin), -f FILE, or stdin when it is not a terminal. */
static int blank(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return !*s;
}

static int read_prompt(char **text, size_t *len) {
    if (g.prompt && g.prompt_file) usage_error("give the text with -p or with -f, not both");
    if (g.prompt && strcmp(g.prompt, "-") != 0) {
        *len = strlen(g.prompt);
        *text = malloc(*len + 1);
        if (!*text) return fail("out of memory");
        memcpy(*text, g.prompt, *len + 1);
        return 0;
    }
    if (g.prompt_file && strcmp(g.prompt_file, "-") != 0) return read_path(g.prompt_file, text, len);
    if (!g.prompt && !g.prompt_file && isatty(STDIN_FILENO))
        usage_error("no input text: use -p TEXT, -f FILE, or pipe the text on stdin");
    if (read_stream(stdin, text, len)) return fail("cannot read stdin: %s", strerror(errno));
    return 0;
}

/* ============================================================================================ */
/* Model loading                                                                                */

/* Download progress, drawn on stderr only when it is a terminal. */
static void progress_cb(void *ud, const char *what, uint64_t done, uint64_t total) {
    static double last;
    (void)ud;
    double t = now_ms();
    int finished = total && done >= total;
    if (!finished && t - last < 100) return;
    last = t;
    if (total)
        fprintf(stderr, "\r\033[K%-32.32s %5.1f%%  %8.1f / %.1f MB", what ? what : "", 100.0 * (double)done / (double)total,
                done / 1e6, total / 1e6);
    else
        fprintf(stderr, "\r\033[K%-32.32s %8.1f MB", what ? what : "", done / 1e6);
    if (finished) fputc('\n', stderr);
    fflush(stderr);
}

static tw_model_params model_params(void) {
    tw_model_params p = tw_model_default_params();
    p.n_threads = g.n_threads;
    p.final_softcap = g.final_softcap;
    p.chat_template_file = g.chat_template;
    p.offline = g.offline;
    if (isatty(STDERR_FILENO)) p.progress = progress_cb;
    return p;
}

static int require_model(void) {
    if (!g.model || !*g.model) usage_error("no model: give -m DIR or -m org/name (or set TOWER_MODEL)");
    return 0;
}

static int load_model(tw_model **m) {
    require_model();
    tw_model_params p = model_params();
    double t0 = now_ms();
    if (tw_model_load(g.model, &p, m) != TW_OK) return fail_lib();
    if (g.verbose)
        fprintf(stderr, "[model %s: %s, %d layers, %d hidden, vocab %d, loaded in %.0f ms]\n", tw_model_dir(*m),
                tw_model_arch(*m), tw_model_n_layer(*m), tw_model_n_embd(*m), tw_model_n_vocab(*m), now_ms() - t0);
    return 0;
}

/* ============================================================================================ */
/* Media: images and videos                                                                     */

typedef enum media_kind { MEDIA_IMAGE, MEDIA_VIDEO } media_kind;

/* One image or video of a prompt: decoded once, counted before anything runs, encoded at most
** once. An image is counted again when the prompt's set of images changes: on LlavaOnevision
** checkpoints several images in one prompt are single tiles, one image is tiled (anyres). */
typedef struct cli_media {
    media_kind kind;
    char      *src;        /* as given: path, "-", directory, URL; a frame list: "a.png ... (N files)" */
    tw_image  *im;         /* MEDIA_IMAGE                                            */
    tw_video  *vid;        /* MEDIA_VIDEO: the sampled frames                        */
    int32_t    n_tokens;   /* placeholder tokens it takes in the prompt              */
    float     *embd;       /* [n_tokens][n_embd] once encoded, else NULL             */
    int32_t    serial;     /* tells media apart in the KV-cache bookkeeping          */
} cli_media;

static const char *const k_placeholder[2] = {"<image>", "<video>"};   /* by media_kind */
static const char *const k_kind_name[2] = {"image", "video"};
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

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
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

static void close_media(cli_media *items, size_t n) {
    for (size_t i = 0; items && i < n; i++) media_close(&items[i]);
    free(items);
}

static size_t n_cli_videos(void) { return g.n_videos + (g.n_frame_paths > 0); }
static size_t n_cli_media(void) { return g.n_images + n_cli_videos(); }

/* Opens the command line's media: the --image list, then the --video list, then the video
** given by --video-frame(s). Not yet in prompt order (order_media) nor counted together
** (media_count). */
static int open_cli_media(const tw_model *m, cli_media **out) {
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
static int media_count(const tw_model *m, cli_media *items, size_t n) {
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
static int media_encode(const tw_model *m, cli_media *items, size_t n) {
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
static void print_media_tokens(FILE *f, const cli_media *items, size_t n) {
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
static char *place_media(const char *text, size_t n_images, size_t n_videos, int prepend) {
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
static int order_media(const char *text, cli_media *items, size_t n) {
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

/* What a tokenized prompt's media tokens stand for: the media's embeddings concatenated in
** placeholder order, and per token the serial of its image or video (-1 for text), so the KV
** cache is reused across media only when it holds that very image or video. */
typedef struct prompt_media {
    float   *embd;      /* [n_rows][n_embd] or NULL                */
    size_t   n_rows;
    int32_t *tags;      /* [n_ids] or NULL (text only)             */
} prompt_media;

static void media_free(prompt_media *pm) {
    free(pm->embd);
    free(pm->tags);
    memset(pm, 0, sizeof *pm);
}

/* items[i] must be encoded; ids come from tw_tokenize_prompt with their token counts. */
static int media_build(const tw_model *m, const int32_t *ids, size_t n_ids, const cli_media *items, size_t n,
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
static int tokenize_with_media(const tw_model *m, const char *prompt, const cli_media *items, size_t n,
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
static int check_fits(const tw_seq *seq, size_t n, const cli_media *items, size_t n_items) {
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

/* the CLI's callback stops only on Ctrl-C */
static const char *stop_reason_name(tw_stop_reason r) { return r == TW_STOP_CALLBACK ? "interrupted" : tw_stop_reason_name(r); }

static tw_gen_params gen_params(int32_t default_max) {
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
static int generate_turn(tw_seq *seq, const int32_t *ids, size_t n, const prompt_media *pm, size_t n_embd,
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

static void print_ids_line(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

static void report_timing(size_t n_prompt, size_t reused, const tw_gen_result *r) {
    size_t evald = n_prompt - reused;
    fprintf(stderr, "[prompt %zu tokens (reused %zu, evaluated %zu) in %.1f ms, %.1f tok/s; generated %zu tokens in %.1f ms, "
                    "%.1f tok/s; stop: %s]\n",
            n_prompt, reused, evald, r->prefill_ms, r->prefill_ms > 0 ? evald * 1e3 / r->prefill_ms : 0.0, r->n_ids,
            r->decode_ms, r->decode_ms > 0 ? r->n_ids * 1e3 / r->decode_ms : 0.0, stop_reason_name(r->stop_reason));
}

/* ============================================================================================ */
/* Languages (translate)                                                                        */

/* The 20 TowerVision languages and variants. name: how the paper's prompt names the language
** ("Translate the following source text from English to German:\n{source}"; the CoMMuTE and
** Multi30K prompts of the authors' lmms-eval fork say "German", "French", "Czech", "Russian",
** "Chinese" for Simplified Chinese). aliases: accepted spellings, compared case-insensitively
** with '_' read as '-'. */
typedef struct language {
    const char *code;
    const char *name;
    const char *aliases[6];
} language;

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

static const language *find_language(const char *s) {
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

static const language *language_arg(const char *opt, const char *s) {
    const language *l = find_language(s);
    if (l) return l;
    fprintf(stderr, "tower: error: %s: unknown language '%s'. Valid languages (name or code, any case):\n", opt, s);
    for (size_t i = 0; i < N_LANGS; i++) fprintf(stderr, "  %-8s %s\n", k_langs[i].code, k_langs[i].name);
    return NULL;
}

/* ============================================================================================ */
/* Help texts                                                                                   */

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
           "  quantize   write an 8-bit or 4-bit single-file copy of a checkpoint\n\n"
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

#define HELP_MODEL_OPTS \
    "model options:\n" \
    "  -m, --model MODEL        checkpoint directory or org/name[@rev] (default: $TOWER_MODEL)\n" \
    "  -t, --threads N          worker threads (default 0: every core)\n" \
    "      --offline            never use the network (also HF_HUB_OFFLINE=1)\n" \
    "      --chat-template FILE use this Jinja chat template instead of the checkpoint's\n" \
    "      --no-final-softcap   no final logit soft-capping (transformers >= 4.52 behaviour)\n" \
    "      --final-softcap      apply 30*tanh(logits/30) (as trained; default: as config.json says)\n" \
    "      --ctx N              context size in tokens (default: the model's max_position_embeddings)\n" \
    "      --kv-type T          KV cache element type: f32 (default, exact), f16 or bf16 (half the memory)\n"

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

static void help_run(void) {
    printf("usage: tower run -m MODEL [-p PROMPT | -f FILE | < stdin] [options]\n\n"
           "One-shot chat: the prompt becomes a user turn (after an optional --system turn), is rendered\n"
           "with the model's chat template (which writes <bos>), tokenized without adding special tokens,\n"
           "and the reply is streamed to stdout as it is generated, followed by a newline.\n\n"
           "input:\n"
           "  -p, --prompt TEXT        the user message ('-': read stdin)\n"
           "  -f, --file FILE          read the user message from FILE ('-': stdin)\n"
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

static void help_chat(void) {
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

static void help_translate(void) {
    printf("usage: tower translate -m MODEL --to LANG [--from LANG] [-p TEXT | -f FILE | < stdin] [options]\n\n"
           "Translates with the prompt the TowerVision paper evaluates with, as one user turn:\n"
           "  Translate the following source text from English to German:\\n{source}\n"
           "Greedy decoding unless sampling options are given.\n\n"
           "  --from LANG          source language (default: English)\n"
           "  --to LANG            target language (required)\n"
           "                       LANG: English name or code, any case: en de nl es fr pt-PT (pt) pt-BR\n"
           "                       uk hi zh-Hans (zh, zh-CN) zh-Hant (zh-TW) ru cs ko ja it pl ro nn nb (no)\n"
           "  --list-languages     print the language table and exit\n"
           "  --lines              translate every input line on its own; one output line per input line\n"
           "  -p, --prompt TEXT    source text ('-': stdin); -f, --file FILE: read it from FILE\n"
           "  --show-prompt        print the rendered prompt and exit; --print-ids: print ids not text\n"
           "  --image SRC          multimodal translation: the image comes first, as in the paper:\n"
           "                       <image>\\nTranslate the following source text from English to German:\\n{source}\n"
           "                       (repeatable; with --lines every line sees the image, encoded once)\n"
           "  --video SRC, --frames N, --video-frames F1,...   a video (TowerVideo), after the images\n"
           "  --image-tokens       print each image's / video's prompt tokens and exit\n\n"
           HELP_SAMPLING_OPTS "\n" HELP_MODEL_OPTS "\n"
           "examples:\n"
           "  tower translate -m utter-project/TowerVision-2B --to de -p \"The weather is lovely today.\"\n"
           "  tower translate -m ./TowerVision-9B --from en --to pt-BR --lines -f test.en > hyp.pt\n"
           "  tower translate -m ./TowerVision-2B --to de --image scene.jpg -p \"He is holding a bat.\"\n");
}

static void help_tokenize(void) {
    printf("usage: tower tokenize -m MODEL_OR_TOKENIZER [-p TEXT | -f FILE | < stdin] [options]\n\n"
           "Prints one line per token: id and vocabulary piece (control characters escaped).\n"
           "MODEL_OR_TOKENIZER: a directory with tokenizer.json (weights not needed), a tokenizer.json\n"
           "file, or a repo id.\n\n"
           "  -p, --prompt TEXT   text to tokenize ('-': stdin); -f, --file FILE: read it from FILE\n"
           "  --no-special        do not prepend <bos> (the default adds it, as HF does)\n"
           "  --ids               print only the ids, space separated, on one line\n"
           "  --jsonl             read JSON lines {\"text\": ..., \"add_special\": bool} from stdin and write\n"
           "                      {\"ids\": [...], \"pieces\": [...]} per line (an \"id\" field is copied;\n"
           "                      add_special defaults to the command line's choice)\n"
           "  --offline           never use the network\n\n"
           "examples:\n"
           "  tower tokenize -m ./TowerVision-2B -p \"Olá, mundo!\"\n"
           "  echo '{\"text\": \"a\\u0000b\", \"add_special\": false}' | tower tokenize -m ./tok --jsonl\n");
}

static void help_dump(void) {
    printf("usage: tower dump -m MODEL --prompt-file FILE [--image SRC ...] [--video SRC [--frames N]]\n"
           "                  -o OUT.safetensors [-n N] [options]\n\n"
           "Runs one forward pass over the exact text of FILE (tokenized without adding special tokens:\n"
           "write <bos> in the file if you want it) and writes a safetensors file with\n"
           "  input_ids           I64 [T]          image tokens expanded\n"
           "  logits              F32 [T, V]       every position, no final softcap unless --final-softcap\n"
           "  text_hidden_states  F32 [L+2, T, H]  scaled embeddings, each layer's output, final norm\n"
           "  generated_ids       I64 [N]          N greedy tokens after the prompt (with -n N > 0)\n"
           "With --image SRC (repeatable, one per <image> in FILE, in order), also the image side, named\n"
           "as in the fixtures (_j suffixes only with several images):\n"
           "  pixel_values        F32 [n_images, max_tiles, 3, S, S]  processor output, zero-padded\n"
           "  image_sizes         I64 [n_images, 2]  (height, width);  num_image_tokens I64 [n_images]\n"
           "  image_rgb[_j]       U8  [h, w, 3]      the decoded image\n"
           "  vision_hidden_states[_j] F32 [L_v+1, tiles, G*G, C]; vision_selected[_j] [tiles, G*G, C]\n"
           "  projected[_j]       F32 [tiles, G*G, H];  packed[_j] F32 [n_tokens, H] (what the text model gets)\n"
           "  (several images on a OneVision checkpoint are single tiles: image_rgb, packed and the sizes only)\n"
           "With --video SRC (or --video-frames), the video side (_j suffixes only with several videos):\n"
           "  video_frame_indices I64 [F]; video_frames_rgb U8 [F, h, w, 3] (decoded, before resizing);\n"
           "  video_frames_resized U8 [F, S, S, 3]; pixel_values_videos F32 [1, F, 3, S, S];\n"
           "  video_vision_hidden_states F32 [L_v+1, F, G*G, C]; video_vision_selected [F, G*G, C];\n"
           "  video_projected [F, G*G, H]; video_pooled [F, P*P, H]; video_features [F*P*P+1, H];\n"
           "  num_video_tokens I64 [1]\n"
           "The file is written atomically: after an error no file is left behind.\n\n"
           "  -f, --prompt-file FILE   prompt text ('-': stdin)\n"
           "  -o, --output FILE        where to write\n"
           "  -n, --max-new-tokens N   greedy tokens to generate (default 0; model stop tokens ignored)\n"
           "  --final-softcap          apply the final logit softcap to the stored logits\n"
           "  --image SRC              an image for the next <image> of FILE (file, '-', data: or http(s) URL)\n"
           "  --video SRC              a video for the next <video> of FILE; --frames N (default 32),\n"
           "                           --video-frames F1,F2,... / --video-frame F as for run\n"
           "  --check-against FILE     compare with a fixture's tensors.safetensors (input_ids,\n"
           "                           generated_ids exact; logits_full/logits_last 3e-3, text_hidden_states\n"
           "                           1e-4 relative; pixel_values 1e-6; image_sizes, image_rgb exact; vision\n"
           "                           tensors 1e-4); video: indices, counts exact, video_frames_rgb within 2\n"
           "                           levels, resized frames / pixel_values_videos within 1 level when the\n"
           "                           decoded frames are identical (resize ties), video tensors 1e-4 when\n"
           "                           the pixels are identical, else (and then logits) only reported;\n"
           "                           logits_argmax exact. Tensors the file lacks are skipped; exit 1 on a\n"
           "                           mismatch. -o is optional with it.\n"
           "  -t, --threads N, --ctx N, --offline, -v, --verbose   as for run\n\n"
           "examples:\n"
           "  tower dump -m ./TowerVision-2B --prompt-file prompt.txt -o out.safetensors -n 16\n"
           "  tower dump -m ./tiny-towervision --prompt-file two.txt --image a.png --image b.png -n 16 \\\n"
           "      --check-against expected/two_images/tensors.safetensors\n"
           "  tower dump -m ./tiny-towervideo --prompt-file v.txt --video clip.mp4 --frames 8 -n 16 \\\n"
           "      --check-against expected-video/video_mp4_h264_8f/tensors.safetensors\n");
}

static void help_info(void) {
    printf("usage: tower info -m MODEL [options]\n\n"
           "Loads the model and describes it: directory, architecture, sizes, tensor dtypes, special and\n"
           "stop tokens, chat template source, kernel path and CPU features, and the build.\n\n"
           "  -m, --model MODEL   checkpoint directory or org/name[@rev]\n"
           "  -t, --threads N, --offline, --chat-template FILE, --[no-]final-softcap   as for run\n\n"
           "example:\n"
           "  tower info -m utter-project/TowerVision-2B\n");
}

/* ============================================================================================ */
/* run / translate                                                                              */

/* Renders [system?, user] (or takes the text as is with --raw) and tokenizes it without specials;
** the user text's "<image>" / "<video>" placeholders stand for imgs, in order. */
static int build_prompt(tw_model *m, const char *user, int raw, const cli_media *imgs, size_t n_imgs, char **prompt,
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
static int one_shot(tw_model *m, tw_seq *seq, const char *user, int raw, int newline_safe, cli_media *imgs,
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
static void check_image_usage(void) {
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
static int image_tokens_only(void) {
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

static int cmd_run(int argc, char **argv) {
    parse_options(argc, argv, C_RUN, help_run);
    require_model();
    check_image_usage();
    if (g.image_tokens) return image_tokens_only();
    char *text = NULL, *utext = NULL;
    size_t len = 0;
    if (read_prompt(&text, &len)) return 1;
    if (strlen(text) != len) { free(text); return fail("the prompt contains a NUL byte"); }
    size_t n_media = n_cli_media();
    if (blank(text) && !n_media) { free(text); return fail("the prompt is empty"); }
    tw_model *m = NULL;
    tw_seq *seq = NULL;
    cli_media *imgs = NULL;
    int rc = load_model(&m);
    /* media go where the text has "<image>" / "<video>"; with none of a kind, one "<image>\n"
    ** per image then one "<video>\n" per video before the text (--raw: the text must place them
    ** itself, it starts with <bos>) */
    if (!rc && n_media && !(utext = place_media(text, g.n_images, n_cli_videos(), !g.raw))) rc = 1;
    if (!rc && g.show_prompt) {
        char *prompt = NULL;
        rc = build_prompt(m, utext ? utext : text, g.raw, NULL, 0, &prompt, NULL, NULL);
        if (!rc) fputs(prompt, stdout);
        tw_free(prompt);
    } else if (!rc) {
        rc = open_cli_media(m, &imgs);
        if (!rc && n_media) rc = order_media(utext, imgs, n_media);
        if (!rc) rc = media_count(m, imgs, n_media);
        if (!rc && g.verbose && n_media) print_media_tokens(stderr, imgs, n_media);
        if (!rc && tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) rc = fail_lib();
        if (!rc) rc = one_shot(m, seq, utext ? utext : text, g.raw, 0, imgs, n_media);
    }
    close_media(imgs, n_media);
    tw_seq_free(seq);
    tw_model_free(m);
    free(utext);
    free(text);
    return rc;
}

/* Builds the paper's translation request for one source text; with images (multimodal
** translation) their placeholders come first, one "<image>\n" each, as in the paper, then one
** "<video>\n" per video. */
static char *translation_request(const language *from, const language *to, const char *src, size_t n_images,
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

static int cmd_translate(int argc, char **argv) {
    parse_options(argc, argv, C_TRANSLATE, help_translate);
    if (g.list_languages) { list_languages(stdout); return 0; }
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
    cli_media *imgs = NULL;   /* encoded once, shared by every line (and their KV reused) */
    size_t n_media = n_cli_media();
    int rc = load_model(&m);
    if (!rc && !g.show_prompt) {
        rc = open_cli_media(m, &imgs);   /* images then videos: the request's order */
        if (!rc) rc = media_count(m, imgs, n_media);
        if (!rc && g.verbose && n_media) print_media_tokens(stderr, imgs, n_media);
        if (!rc && tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) rc = fail_lib();
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
            if (g.show_prompt) {
                char *prompt = NULL;
                rc = build_prompt(m, req, 0, NULL, 0, &prompt, NULL, NULL);
                if (!rc) fputs(prompt, stdout);
                tw_free(prompt);
            } else {
                rc = one_shot(m, seq, req, 0, g.lines, imgs, n_media);
            }
            free(req);
        }
        if (!next || !*next) break;
        line = next;
    }
    close_media(imgs, n_media);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}

/* ============================================================================================ */
/* chat                                                                                         */

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

/* The images and videos of a conversation, in prompt order; the last n_pending are attached (by
** /image, /video, --image or --video) to the next user message. Earlier media keep their
** features, so a re-rendered conversation gives the same prefix and its KV cache is reused; only
** new media are encoded (and, on OneVision, images whose count changes with the image set). */
typedef struct chat_media {
    cli_media *v;
    size_t     n, cap, n_pending;
} chat_media;

/* src, or with frames (n_paths > 0) the --video-frame(s) list. */
static int chat_attach(const tw_model *m, chat_media *ci, media_kind kind, const char *src, const char *const *frames,
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

static void chat_drop_media(chat_media *ci, size_t keep) {
    while (ci->n > keep) media_close(&ci->v[--ci->n]);
    if (ci->n_pending > ci->n) ci->n_pending = ci->n;
}

static int cmd_chat(int argc, char **argv) {
    parse_options(argc, argv, C_CHAT, help_chat);
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

/* ============================================================================================ */
/* tokenize                                                                                     */

static int load_tokenizer(tw_tokenizer **tok) {
    require_model();
    struct stat st;
    if (stat(g.model, &st) == 0) {
        if (tw_tokenizer_load(g.model, tok) != TW_OK) return fail_lib();
        return 0;
    }
    if (!tw_hub_is_repo_id(g.model))
        return fail("%s: no such file or directory (nor a Hugging Face repo id org/name)", g.model);
    tw_model_params p = model_params();
    char *dir = NULL;
    if (tw_model_resolve(g.model, &p, &dir) != TW_OK) return fail_lib();
    tw_status s = tw_tokenizer_load(dir, tok);
    tw_free(dir);
    return s == TW_OK ? 0 : fail_lib();
}

static json_t *pieces_json(const tw_tokenizer *tok, const int32_t *ids, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        size_t pl = 0;
        const char *p = tw_token_piece(tok, ids[i], &pl);
        json_t *s = p ? json_stringn(p, pl) : NULL;
        json_array_append_new(a, s ? s : json_null());
    }
    return a;
}

static int tokenize_jsonl(const tw_tokenizer *tok) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t n;
    int rc = 0;
    while (!rc && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (!n) continue;
        json_error_t jerr;
        json_t *in = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        const json_t *text = in ? json_object_get(in, "text") : NULL;
        const json_t *add = in ? json_object_get(in, "add_special") : NULL;
        if (!in) { rc = fail("stdin line %zu: %s (column %d)", lineno, jerr.text, jerr.column); break; }
        if (!json_is_object(in) || !json_is_string(text)) {
            json_decref(in);
            rc = fail("stdin line %zu: expected an object with a string field \"text\"", lineno);
            break;
        }
        if (add && !json_is_boolean(add)) {
            json_decref(in);
            rc = fail("stdin line %zu: field \"add_special\" must be true or false", lineno);
            break;
        }
        int add_special = add ? json_is_true(add) : !g.no_special;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (tw_tokenize(tok, json_string_value(text), json_string_length(text), add_special, &ids, &n_ids) != TW_OK) {
            json_decref(in);
            rc = fail("stdin line %zu: %s", lineno, tw_last_error());
            break;
        }
        json_t *out = json_object(), *ja = json_array();
        const json_t *id = json_object_get(in, "id");
        if (id) json_object_set(out, "id", (json_t *)id);
        for (size_t i = 0; i < n_ids; i++) json_array_append_new(ja, json_integer(ids[i]));
        json_object_set_new(out, "ids", ja);
        json_object_set_new(out, "pieces", pieces_json(tok, ids, n_ids));
        char *s = json_dumps(out, JSON_COMPACT);
        if (s) { puts(s); free(s); }
        else rc = fail("stdin line %zu: cannot encode the output as JSON", lineno);
        json_decref(out);
        json_decref(in);
        tw_free(ids);
    }
    free(line);
    return rc;
}

static int cmd_tokenize(int argc, char **argv) {
    parse_options(argc, argv, C_TOKENIZE, help_tokenize);
    if (g.jsonl && (g.prompt || g.prompt_file)) usage_error("--jsonl reads JSON lines from stdin; drop -p/-f");
    tw_tokenizer *tok = NULL;
    if (load_tokenizer(&tok)) return 1;
    int rc = 0;
    if (g.jsonl) {
        rc = tokenize_jsonl(tok);
    } else {
        char *text = NULL;
        size_t len = 0;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (read_prompt(&text, &len)) rc = 1;
        else if (tw_tokenize(tok, text, len, !g.no_special, &ids, &n_ids) != TW_OK) rc = fail_lib();
        else if (g.ids_only) print_ids_line(ids, n_ids);
        else {
            for (size_t i = 0; i < n_ids; i++) {
                size_t pl = 0;
                const char *p = tw_token_piece(tok, ids[i], &pl);
                printf("%8d  ", ids[i]);
                if (p) print_piece(stdout, p, pl);
                putchar('\n');
            }
            fprintf(stderr, "%zu tokens\n", n_ids);
        }
        tw_free(ids);
        free(text);
    }
    tw_tokenizer_free(tok);
    return rc;
}

/* ============================================================================================ */
/* dump                                                                                         */

/* max |a - b| over n floats */
static double max_abs_diff(const float *a, const float *b, size_t n, double *max_b) {
    double d = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (x > d || isnan(x)) d = isnan(x) ? INFINITY : x;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    if (max_b) *max_b = mb;
    return d;
}

/* What dump computed for one image, kept for writing and checking (packed = the cli_media's
** embd, what the text model receives). */
typedef struct dump_image {
    tw_anyres_plan plan;
    float *pixels;      /* [n_tiles][3][S][S]            */
    float *hidden;      /* [L_v + 1][n_tiles][G*G][C]    */
    float *selected;    /* [n_tiles][G*G][C]             */
    float *projected;   /* [n_tiles][G*G][H]             */
} dump_image;

static void dump_image_free(dump_image *d) {
    free(d->pixels);
    free(d->hidden);
    free(d->selected);
    free(d->projected);
}

/* Runs the image path step by step, keeping every intermediate: preprocess, SigLIP (all hidden
** states), projector, packing into ci->embd. */
static int dump_vision(const tw_model *m, cli_media *ci, size_t index, dump_image *d) {
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

/* What dump computed for one video (video_features = the cli_media's embd; video_pooled = its
** rows before the final image_newline). */
typedef struct dump_video {
    int32_t  S;         /* frame side after resizing                */
    uint8_t *resized;   /* [F][S][S][3]                             */
    float   *pixels;    /* [F][3][S][S]  pixel_values_videos         */
    float   *hidden;    /* [L_v + 1][F][G*G][C]                     */
    float   *selected;  /* [F][G*G][C]                              */
    float   *projected; /* [F][G*G][H]                              */
} dump_video;

static void dump_video_free(dump_video *d) {
    free(d->resized);
    free(d->pixels);
    free(d->hidden);
    free(d->selected);
    free(d->projected);
}

/* The video path step by step: resize, normalise, SigLIP per frame (all hidden states),
** projector, pooling + newline into ci->embd. */
static int dump_video_run(const tw_model *m, cli_media *ci, size_t index, dump_video *d) {
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

/* Tensor name with the fixtures' _j suffix when the prompt has several images (or videos). */
static const char *img_name(char *buf, size_t cap, const char *base, size_t j, size_t n_imgs) {
    if (n_imgs > 1) snprintf(buf, cap, "%s_%zu", base, j);
    else snprintf(buf, cap, "%s", base);
    return buf;
}

/* One check line on stderr; returns 1 on a mismatch. A tensor the fixture lacks is skipped.
** why != NULL: the difference is only reported (an input upstream already differs). */
static int check_f32_why(const tw_st_set *set, const char *name, const float *ours, size_t n, double limit, int rel,
                         const char *why) {
    const tw_tensor *t = tw_st_get(set, name);
    if (!t) return 0;
    if (t->type != TW_DT_F32 || (size_t)tw_tensor_nelem(t) != n) {
        fprintf(stderr, "check %s: MISMATCH (the reference has %lld %s values, dump computed %zu)\n", name,
                (long long)tw_tensor_nelem(t), tw_dtype_name(t->type), n);
        return 1;
    }
    double mb, d = max_abs_diff(ours, t->data, n, &mb), lim = rel ? limit * mb + limit : limit;
    if (why) {
        fprintf(stderr, "check %s: max |diff| %.3g (reported, not compared: %s)\n", name, d, why);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %.3g (limit %.3g): %s\n", name, d, lim, d <= lim ? "ok" : "MISMATCH");
    return !(d <= lim);
}

static int check_f32(const tw_st_set *set, const char *name, const float *ours, size_t n, double limit, int rel) {
    return check_f32_why(set, name, ours, n, limit, rel, NULL);
}

static int check_exact(const tw_st_set *set, const char *name, tw_dtype type, const void *ours, size_t n) {
    const tw_tensor *t = tw_st_get(set, name);
    if (!t) return 0;
    int ok = t->type == type && (size_t)tw_tensor_nelem(t) == n && memcmp(t->data, ours, n * tw_dtype_size(type)) == 0;
    fprintf(stderr, "check %s (%zu): %s\n", name, n, ok ? "ok" : "MISMATCH");
    return !ok;
}

/* uint8 pixels: max |diff| in levels and how many values differ; limit < 0: report only.
** *maxd = the largest difference (-1: the tensor is absent or has another shape). */
static int check_u8(const tw_st_set *set, const char *name, const uint8_t *ours, size_t n, int limit, int *maxd) {
    const tw_tensor *t = tw_st_get(set, name);
    *maxd = -1;
    if (!t) return 0;
    if (t->type != TW_DT_U8 || (size_t)tw_tensor_nelem(t) != n) {
        fprintf(stderr, "check %s: MISMATCH (the reference has %lld %s values, dump computed %zu)\n", name,
                (long long)tw_tensor_nelem(t), tw_dtype_name(t->type), n);
        return 1;
    }
    const uint8_t *r = t->data;
    size_t differ = 0;
    int d = 0;
    for (size_t i = 0; i < n; i++) {
        int x = abs((int)ours[i] - (int)r[i]);
        differ += x != 0;
        if (x > d) d = x;
    }
    *maxd = d;
    if (limit < 0) {
        fprintf(stderr, "check %s: max |diff| %d level(s), %zu of %zu values differ (reported, not compared: the "
                        "decoded frames differ)\n", name, d, differ, n);
        return 0;
    }
    fprintf(stderr, "check %s: max |diff| %d level(s) (limit %d), %zu of %zu values differ: %s\n", name, d, limit, differ,
            n, d <= limit ? "ok" : "MISMATCH");
    return d > limit;
}

/* What dump computed, for writing and checking. */
typedef struct dump_out {
    const int64_t *ids64;          /* [T]                            */
    size_t         T;
    const float   *logits;         /* [T, V]                         */
    int32_t        V;
    const float   *hidden;         /* [L+2, T, H]                    */
    size_t         n_hidden;
    const int64_t *gen64;          /* [N]                            */
    size_t         N;
    cli_media *const *imgs;        /* n_imgs images in prompt order, packed features in embd */
    const dump_image *dimg;        /* NULL: several OneVision images (single tiles: packed only) */
    size_t         n_imgs;
    const float   *pixel_values;   /* [n_imgs, max_tiles, 3, S, S]   */
    size_t         n_pixel_values;
    const int64_t *image_sizes;    /* [n_imgs, 2]                    */
    const int64_t *num_tokens;     /* [n_imgs]                       */
    cli_media *const *vids;        /* n_vids videos in prompt order, video_features in embd */
    const dump_video *dvid;
    size_t         n_vids;
} dump_out;

/* The video side of check_against. *pixels_differ is set when a video's pixel_values_videos are
** not the reference's (decoding or resize ties), so what follows can only be reported. */
static int check_videos(const tw_st_set *set, const tw_model *m, const dump_out *o, int *pixels_differ) {
    int bad = 0;
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer;
    int32_t P = tw_video_pooled_side(m);
    for (size_t j = 0; j < o->n_vids; j++) {
        char nm[64];
        const cli_media *ci = o->vids[j];
        const dump_video *d = &o->dvid[j];
        const tw_video *v = ci->vid;
        size_t F = (size_t)v->n_frames, S = (size_t)d->S, nt = F * (size_t)N;
        int64_t ntok = ci->n_tokens;
        int rgb_d = -1, res_d = -1;
        bad += check_exact(set, img_name(nm, sizeof nm, "video_frame_indices", j, o->n_vids), TW_DT_I64, v->indices, F);
        bad += check_exact(set, img_name(nm, sizeof nm, "num_video_tokens", j, o->n_vids), TW_DT_I64, &ntok, 1);
        /* swscale's yuv->rgb paths may differ by a level or two between builds and CPUs */
        bad += check_u8(set, img_name(nm, sizeof nm, "video_frames_rgb", j, o->n_vids), v->rgb,
                        F * (size_t)v->height * (size_t)v->width * 3, 2, &rgb_d);
        /* same frames: the resize may still differ by one level where torch's value is within
        ** float noise of .5 (docs/video.md) */
        bad += check_u8(set, img_name(nm, sizeof nm, "video_frames_resized", j, o->n_vids), d->resized, F * S * S * 3,
                        rgb_d == 0 ? 1 : -1, &res_d);
        const char *name = img_name(nm, sizeof nm, "pixel_values_videos", j, o->n_vids);
        const tw_tensor *t = tw_st_get(set, name);
        size_t npx = F * 3 * S * S;
        int same_px = 0;
        if (t) {
            if (t->type != TW_DT_F32 || (size_t)tw_tensor_nelem(t) != npx) {
                bad += check_f32(set, name, d->pixels, npx, 0, 0);   /* prints the shape mismatch */
            } else {
                const float *r = t->data;
                size_t differ = 0;
                for (size_t i = 0; i < npx; i++) differ += fabsf(d->pixels[i] - r[i]) > 1e-6f;
                double md = max_abs_diff(d->pixels, r, npx, NULL), level = 1.0 / 127.5 + 1e-6;
                same_px = differ == 0;
                if (rgb_d == 0) {
                    int ok = md <= level;
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (%s; limit 1 level = %.3g): %s\n",
                            name, md, differ, npx, same_px ? "exact" : "resize ties", level, ok ? "ok" : "MISMATCH");
                    bad += !ok;
                } else {
                    fprintf(stderr, "check %s: max |diff| %.3g, %zu of %zu values differ (reported, not compared: the "
                                    "decoded frames differ)\n", name, md, differ, npx);
                }
            }
        }
        if (!same_px) *pixels_differ = 1;
        const char *why = same_px ? NULL : "the frames' pixels differ from the reference's";
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_vision_hidden_states", j, o->n_vids), d->hidden,
                             (size_t)(Lv + 1) * nt * (size_t)C, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_vision_selected", j, o->n_vids), d->selected,
                             nt * (size_t)C, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_projected", j, o->n_vids), d->projected,
                             nt * (size_t)H, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_pooled", j, o->n_vids), ci->embd,
                             F * (size_t)P * (size_t)P * (size_t)H, 1e-4, 0, why);
        bad += check_f32_why(set, img_name(nm, sizeof nm, "video_features", j, o->n_vids), ci->embd,
                             (size_t)ci->n_tokens * (size_t)H, 1e-4, 0, why);
    }
    return bad;
}

/* Compares what dump computed with a fixture's tensors; prints one line per check on stderr. */
static int check_against(const char *path, const tw_model *m, const dump_out *o) {
    tw_st_set *set = NULL;
    if (tw_st_open_file(path, &set) != TW_OK) return fail_lib();
    int bad = check_exact(set, "input_ids", TW_DT_I64, o->ids64, o->T);
    const tw_tensor *t;
    if (o->N && (t = tw_st_get(set, "generated_ids")) && t->type == TW_DT_I64) {
        size_t ne = (size_t)tw_tensor_nelem(t), k = o->N < ne ? o->N : ne;
        int ok = memcmp(t->data, o->gen64, k * sizeof *o->gen64) == 0;
        fprintf(stderr, "check generated_ids (%zu): %s\n", k, ok ? "ok" : "MISMATCH");
        bad += !ok;
    }
    /* the video side first: when its pixels differ (resize ties), the text side moves a little */
    int pixels_differ = 0;
    if (o->n_vids) bad += check_videos(set, m, o, &pixels_differ);
    const char *why = pixels_differ ? "the video's pixels differ from the reference's" : NULL;
    if ((t = tw_st_get(set, "logits_argmax")) && t->type == TW_DT_I64 && (size_t)tw_tensor_nelem(t) == o->T) {
        size_t differ = 0;
        for (size_t i = 0; i < o->T; i++) {
            const float *lg = o->logits + i * (size_t)o->V;
            int32_t best = 0;
            for (int32_t k = 1; k < o->V; k++)
                if (lg[k] > lg[best]) best = k;
            differ += best != ((const int64_t *)t->data)[i];
        }
        fprintf(stderr, "check logits_argmax (%zu): %s\n", o->T, differ ? "MISMATCH" : "ok");
        bad += differ != 0;
    }
    size_t TV = o->T * (size_t)o->V;
    if ((t = tw_st_get(set, "logits_full")) && (size_t)tw_tensor_nelem(t) == TV)
        bad += check_f32_why(set, "logits_full", o->logits, TV, 3e-3, 0, why);
    if ((t = tw_st_get(set, "logits_last")) && tw_tensor_nelem(t) == o->V && o->T)
        bad += check_f32_why(set, "logits_last", o->logits + (o->T - 1) * (size_t)o->V, (size_t)o->V, 3e-3, 0, why);
    bad += check_f32_why(set, "text_hidden_states", o->hidden, o->n_hidden, 1e-4, 1, why);
    if (o->n_imgs) {
        int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer;
        if (o->dimg) bad += check_f32(set, "pixel_values", o->pixel_values, o->n_pixel_values, 1e-6, 0);
        bad += check_exact(set, "image_sizes", TW_DT_I64, o->image_sizes, 2 * o->n_imgs);
        bad += check_exact(set, "num_image_tokens", TW_DT_I64, o->num_tokens, o->n_imgs);
        for (size_t j = 0; j < o->n_imgs; j++) {
            char nm[64];
            const cli_media *ci = o->imgs[j];
            bad += check_exact(set, img_name(nm, sizeof nm, "image_rgb", j, o->n_imgs), TW_DT_U8, tw_image_rgb(ci->im),
                               (size_t)tw_image_width(ci->im) * (size_t)tw_image_height(ci->im) * 3);
            if (o->dimg) {
                const dump_image *d = &o->dimg[j];
                size_t nt = (size_t)d->plan.n_tiles * (size_t)N;
                bad += check_f32(set, img_name(nm, sizeof nm, "vision_hidden_states", j, o->n_imgs), d->hidden,
                                 (size_t)(Lv + 1) * nt * (size_t)C, 1e-4, 0);
                bad += check_f32(set, img_name(nm, sizeof nm, "vision_selected", j, o->n_imgs), d->selected,
                                 nt * (size_t)C, 1e-4, 0);
                bad += check_f32(set, img_name(nm, sizeof nm, "projected", j, o->n_imgs), d->projected, nt * (size_t)H,
                                 1e-4, 0);
            }
            bad += check_f32(set, img_name(nm, sizeof nm, "packed", j, o->n_imgs), ci->embd,
                             (size_t)ci->n_tokens * (size_t)H, 1e-4, 0);
        }
    }
    tw_st_close(set);
    return bad ? fail("%d check(s) against %s failed", bad, path) : 0;
}

/* Adds one video's tensors (fixture names, _j with several videos). */
static tw_status write_video(tw_st_writer *w, const tw_model *m, const dump_out *o, size_t j) {
    int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, H = tw_model_n_embd(m), Lv = m->vision.n_layer,
            P = tw_video_pooled_side(m);
    const cli_media *ci = o->vids[j];
    const dump_video *d = &o->dvid[j];
    const tw_video *v = ci->vid;
    int64_t F = v->n_frames, S = d->S, ntok = ci->n_tokens;
    int64_t s_idx[1] = {F}, s_rgb[4] = {F, v->height, v->width, 3}, s_res[4] = {F, S, S, 3}, s_pv[5] = {1, F, 3, S, S},
            s_vh[4] = {Lv + 1, F, N, C}, s_sel[3] = {F, N, C}, s_proj[3] = {F, N, H}, s_pool[3] = {F, (int64_t)P * P, H},
            s_feat[2] = {ntok, H}, s_n[1] = {1};
    char nm[64];
    size_t n = o->n_vids;
    tw_status st;
    if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frame_indices", j, n), TW_DT_I64, 1, s_idx,
                               v->indices)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frames_rgb", j, n), TW_DT_U8, 4, s_rgb, v->rgb)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_frames_resized", j, n), TW_DT_U8, 4, s_res,
                               d->resized)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "pixel_values_videos", j, n), TW_DT_F32, 5, s_pv,
                               d->pixels)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_vision_hidden_states", j, n), TW_DT_F32, 4, s_vh,
                               d->hidden)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_vision_selected", j, n), TW_DT_F32, 3, s_sel,
                               d->selected)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_projected", j, n), TW_DT_F32, 3, s_proj,
                               d->projected)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_pooled", j, n), TW_DT_F32, 3, s_pool, ci->embd)) != TW_OK ||
        (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "video_features", j, n), TW_DT_F32, 2, s_feat, ci->embd)) != TW_OK)
        return st;
    return tw_st_writer_add(w, img_name(nm, sizeof nm, "num_video_tokens", j, n), TW_DT_I64, 1, s_n, &ntok);
}

/* Writes everything dump computed to one safetensors file (atomically). */
static int write_dump(const char *path, const tw_model *m, const dump_out *o) {
    int32_t L = tw_model_n_layer(m), H = tw_model_n_embd(m);
    int64_t s_ids[1] = {(int64_t)o->T}, s_logits[2] = {(int64_t)o->T, o->V}, s_hidden[3] = {L + 2, (int64_t)o->T, H},
            s_gen[1] = {(int64_t)o->N};
    tw_st_writer *w = tw_st_writer_new();
    if (!w) return fail("out of memory");
    tw_status st = TW_OK;
    if ((st = tw_st_writer_add(w, "input_ids", TW_DT_I64, 1, s_ids, o->ids64)) != TW_OK ||
        (st = tw_st_writer_add(w, "logits", TW_DT_F32, 2, s_logits, o->logits)) != TW_OK ||
        (st = tw_st_writer_add(w, "text_hidden_states", TW_DT_F32, 3, s_hidden, o->hidden)) != TW_OK ||
        (o->N && (st = tw_st_writer_add(w, "generated_ids", TW_DT_I64, 1, s_gen, o->gen64)) != TW_OK))
        goto done;
    if (o->n_imgs) {
        int32_t G = tw_vision_grid(m), N = G * G, C = m->vision.n_embd, Lv = m->vision.n_layer, S = m->vision.image_size;
        int64_t n = (int64_t)o->n_imgs;
        int64_t s_pv[5] = {n, (int64_t)(o->n_pixel_values / ((size_t)n * 3 * (size_t)S * (size_t)S)), 3, S, S};
        int64_t s_sizes[2] = {n, 2}, s_ntok[1] = {n};
        if ((o->dimg && (st = tw_st_writer_add(w, "pixel_values", TW_DT_F32, 5, s_pv, o->pixel_values)) != TW_OK) ||
            (st = tw_st_writer_add(w, "image_sizes", TW_DT_I64, 2, s_sizes, o->image_sizes)) != TW_OK ||
            (st = tw_st_writer_add(w, "num_image_tokens", TW_DT_I64, 1, s_ntok, o->num_tokens)) != TW_OK)
            goto done;
        for (size_t j = 0; j < o->n_imgs; j++) {
            char nm[64];
            const cli_media *ci = o->imgs[j];
            int64_t s_rgb[3] = {tw_image_height(ci->im), tw_image_width(ci->im), 3}, s_pack[2] = {ci->n_tokens, H};
            if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "image_rgb", j, o->n_imgs), TW_DT_U8, 3, s_rgb,
                                       tw_image_rgb(ci->im))) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "packed", j, o->n_imgs), TW_DT_F32, 2, s_pack,
                                       ci->embd)) != TW_OK)
                goto done;
            if (!o->dimg) continue;
            const dump_image *d = &o->dimg[j];
            int64_t tiles = d->plan.n_tiles;
            int64_t s_vh[4] = {Lv + 1, tiles, N, C}, s_sel[3] = {tiles, N, C}, s_proj[3] = {tiles, N, H};
            if ((st = tw_st_writer_add(w, img_name(nm, sizeof nm, "vision_hidden_states", j, o->n_imgs), TW_DT_F32, 4,
                                       s_vh, d->hidden)) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "vision_selected", j, o->n_imgs), TW_DT_F32, 3, s_sel,
                                       d->selected)) != TW_OK ||
                (st = tw_st_writer_add(w, img_name(nm, sizeof nm, "projected", j, o->n_imgs), TW_DT_F32, 3, s_proj,
                                       d->projected)) != TW_OK)
                goto done;
        }
    }
    for (size_t j = 0; j < o->n_vids; j++)
        if ((st = write_video(w, m, o, j)) != TW_OK) goto done;
    st = tw_st_writer_save(w, path);
done:
    tw_st_writer_free(w);
    return st == TW_OK ? 0 : fail_lib();
}

static int cmd_dump(int argc, char **argv) {
    parse_options(argc, argv, C_DUMP, help_dump);
    require_model();
    if (!g.prompt_file) usage_error("missing --prompt-file FILE");
    if (!g.out && !g.check_against) usage_error("missing -o OUT.safetensors");
    size_t from_stdin = !strcmp(g.prompt_file, "-");
    for (size_t i = 0; i < g.n_images; i++) from_stdin += !strcmp(g.images[i], "-");
    if (from_stdin > 1) usage_error("only one of --prompt-file and --image can read stdin ('-')");
    for (size_t i = 0; i < g.n_videos; i++)
        if (!strcmp(g.videos[i], "-")) usage_error("--video cannot read stdin: give a file, directory or URL");
    char *text = NULL;
    size_t len = 0;
    if (read_prompt(&text, &len)) return 1;

    tw_model *m = NULL;
    tw_seq *seq = NULL;
    cli_media *items = NULL, **imgs = NULL, **vids = NULL;
    dump_image *dimg = NULL;
    dump_video *dvid = NULL;
    prompt_media pm = {0};
    int32_t *ids = NULL, *gen = NULL;
    int64_t *ids64 = NULL, *gen64 = NULL, *sizes = NULL, *ntok = NULL;
    float *logits = NULL, *hidden = NULL, *pv = NULL;
    size_t T = 0, N = (size_t)g.max_new, n_media = n_cli_media(), n_imgs = g.n_images, n_vids = n_cli_videos(), n_pv = 0;
    int rc = load_model(&m);
    if (rc) goto done;
    if (n_media && strlen(text) != len) { rc = fail("%s: the prompt contains a NUL byte", g.prompt_file); goto done; }
    /* the media in the order the file's placeholders name them */
    if ((rc = open_cli_media(m, &items)) || (rc = order_media(text, items, n_media)) ||
        (rc = media_count(m, items, n_media)))
        goto done;
    imgs = calloc(n_imgs + 1, sizeof *imgs);
    vids = calloc(n_vids + 1, sizeof *vids);
    if (!imgs || !vids) { rc = fail("out of memory"); goto done; }
    for (size_t i = 0, a = 0, b = 0; i < n_media; i++) {
        if (items[i].kind == MEDIA_IMAGE) imgs[a++] = &items[i];
        else vids[b++] = &items[i];
    }
    if (n_media) rc = tokenize_with_media(m, text, items, n_media, &ids, &T);
    else if (tw_tokenize(tw_model_tokenizer(m), text, len, 0, &ids, &T) != TW_OK) rc = fail_lib();
    if (rc) goto done;
    if (T == 0) { rc = fail("%s: the prompt is empty", g.prompt_file); goto done; }
    if (tw_seq_new_ex(m, g.n_ctx, &(tw_seq_params){ .kv_type = g.kv_type }, &seq) != TW_OK) { rc = fail_lib(); goto done; }
    int32_t V = tw_model_n_vocab(m), H = tw_model_n_embd(m), L = tw_model_n_layer(m);
    if ((int64_t)T + (int64_t)N > tw_seq_n_ctx(seq)) {
        size_t vt = 0;
        for (size_t j = 0; j < n_vids; j++) vt += (size_t)vids[j]->n_tokens;
        rc = fail("%s: the prompt has %zu tokens%s and %zu more are asked for, but the context holds %d (see --ctx%s)",
                  g.prompt_file, T, vt ? " (video included)" : "", N, tw_seq_n_ctx(seq), vt ? ", --frames" : "");
        goto done;
    }

    /* the image side: every intermediate, then pixel_values zero-padded to the most tiles;
    ** several images on a OneVision checkpoint are single tiles: only packed is kept */
    if (n_imgs) {
        int single_tiles = m->arch == TW_ARCH_LLAVA_ONEVISION && n_imgs > 1;
        if (!single_tiles) dimg = calloc(n_imgs, sizeof *dimg);
        sizes = malloc(2 * n_imgs * sizeof *sizes);
        ntok = malloc(n_imgs * sizeof *ntok);
        if ((!single_tiles && !dimg) || !sizes || !ntok) { rc = fail("out of memory"); goto done; }
        int32_t max_tiles = 0;
        for (size_t j = 0; j < n_imgs; j++) {
            if (dimg && (rc = dump_vision(m, imgs[j], j, &dimg[j]))) goto done;
            if (dimg && dimg[j].plan.n_tiles > max_tiles) max_tiles = dimg[j].plan.n_tiles;
            sizes[2 * j] = tw_image_height(imgs[j]->im);
            sizes[2 * j + 1] = tw_image_width(imgs[j]->im);
            ntok[j] = imgs[j]->n_tokens;
        }
        if (single_tiles) {
            if (g.verbose) fprintf(stderr, "[dump: %zu OneVision images, one tile each: packed only]\n", n_imgs);
            if ((rc = media_encode(m, items, n_media))) goto done;   /* videos are encoded below, first */
        } else {
            size_t tile = 3 * (size_t)m->vision.image_size * (size_t)m->vision.image_size;
            n_pv = n_imgs * (size_t)max_tiles * tile;
            if (!(pv = calloc(n_pv, sizeof *pv))) { rc = fail("out of memory"); goto done; }
            for (size_t j = 0; j < n_imgs; j++)
                memcpy(pv + j * (size_t)max_tiles * tile, dimg[j].pixels, (size_t)dimg[j].plan.n_tiles * tile * sizeof *pv);
        }
    }
    if (n_vids) {
        if (!(dvid = calloc(n_vids, sizeof *dvid))) { rc = fail("out of memory"); goto done; }
        for (size_t j = 0; j < n_vids; j++)
            if ((rc = dump_video_run(m, vids[j], j, &dvid[j]))) goto done;
    }
    if (n_media && (rc = media_build(m, ids, T, items, n_media, &pm))) goto done;

    size_t n_hidden = (size_t)(L + 2) * T * (size_t)H;
    logits = malloc(T * (size_t)V * sizeof *logits);
    hidden = malloc(n_hidden * sizeof *hidden);
    ids64 = malloc(T * sizeof *ids64);
    gen = malloc((N + 1) * sizeof *gen);
    gen64 = malloc((N + 1) * sizeof *gen64);
    if (!logits || !hidden || !ids64 || !gen || !gen64) { rc = fail("out of memory (%zu tokens x %d vocab)", T, V); goto done; }

    tw_eval_opts eo = {.embd = pm.embd, .n_embd_rows = pm.n_rows, .logits = logits, .hidden = hidden};
    double t0 = now_ms();
    if (tw_seq_eval(seq, ids, T, &eo) != TW_OK) { rc = fail_lib(); goto done; }
    double t1 = now_ms();
    /* greedy continuation: first index of the maximum, model stop tokens not applied */
    for (size_t i = 0; i < N; i++) {
        const float *lg = tw_seq_logits(seq);
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        gen[i] = best;
        if (i + 1 < N && tw_seq_eval(seq, &gen[i], 1, NULL) != TW_OK) { rc = fail_lib(); goto done; }
    }
    if (g.verbose)
        fprintf(stderr, "[dump: %zu prompt tokens in %.1f ms, %zu generated in %.1f ms]\n", T, t1 - t0, N, now_ms() - t1);
    for (size_t i = 0; i < T; i++) ids64[i] = ids[i];
    for (size_t i = 0; i < N; i++) gen64[i] = gen[i];

    dump_out o = {
        .ids64 = ids64, .T = T, .logits = logits, .V = V, .hidden = hidden, .n_hidden = n_hidden, .gen64 = gen64, .N = N,
        .imgs = imgs, .dimg = dimg, .n_imgs = n_imgs, .pixel_values = pv, .n_pixel_values = n_pv, .image_sizes = sizes,
        .num_tokens = ntok, .vids = vids, .dvid = dvid, .n_vids = n_vids,
    };
    if (g.out && (rc = write_dump(g.out, m, &o))) goto done;
    if (g.check_against) rc = check_against(g.check_against, m, &o);
done:
    for (size_t j = 0; dimg && j < n_imgs; j++) dump_image_free(&dimg[j]);
    for (size_t j = 0; dvid && j < n_vids; j++) dump_video_free(&dvid[j]);
    free(dimg);
    free(dvid);
    free(imgs);
    free(vids);
    close_media(items, n_media);
    media_free(&pm);
    free(pv);
    free(sizes);
    free(ntok);
    free(logits);
    free(hidden);
    free(ids64);
    free(gen);
    free(gen64);
    tw_free(ids);
    tw_seq_free(seq);
    tw_model_free(m);
    free(text);
    return rc;
}

/* ============================================================================================ */
/* info                                                                                         */

static void print_token(const tw_tokenizer *tok, int32_t id) {
    size_t pl = 0;
    const char *p = tok ? tw_token_piece(tok, id, &pl) : NULL;
    printf(" %d", id);
    if (p) { fputs(" (", stdout); print_piece(stdout, p, pl); putchar(')'); }
}

/* Where the chat template comes from; src: the checkpoint directory or a packed file's
** embedded files. */
static const char *template_source(const tw_src *src, char *buf, size_t cap) {
    if (g.chat_template) { snprintf(buf, cap, "%s (--chat-template)", g.chat_template); return buf; }
    if (tw_src_exists(src, "chat_template.jinja")) return "chat_template.jinja";
    if (tw_src_exists(src, "chat_template.json")) return "chat_template.json";
    json_t *j = NULL;   /* tw_src_json reads model_max_length = 1e30 too */
    if (tw_src_exists(src, "tokenizer_config.json") && tw_src_json(src, "tokenizer_config.json", &j) != TW_OK) j = NULL;
    int has = j && json_is_string(json_object_get(j, "chat_template"));
    int has_list = j && json_is_array(json_object_get(j, "chat_template"));
    json_decref(j);
    if (has || has_list) return "tokenizer_config.json (\"chat_template\")";
    return "none found in the checkpoint (the library's default, if any)";
}

static int cmd_info(int argc, char **argv) {
    parse_options(argc, argv, C_INFO, help_info);
    tw_model *m = NULL;
    int rc = load_model(&m);
    if (rc) return rc;
    const tw_tokenizer *tok = tw_model_tokenizer(m);
    const char *dir = tw_model_dir(m);
    char buf[4096];
    printf("model:          %s\n", g.model);
    /* a `tower quantize` file: tw_model_dir is the file, its small files are embedded in it */
    bool packed = tw_file_exists(dir);
    printf("%s%s\n", packed ? "file:           " : "directory:      ", dir);
    printf("architecture:   %s\n", tw_model_arch(m));
    printf("text model:     %d layers, hidden %d, vocab %d, trained context %d\n", tw_model_n_layer(m), tw_model_n_embd(m),
           tw_model_n_vocab(m), tw_model_n_ctx_train(m));
    int32_t img = tw_model_image_token(m);
    if (img >= 0) { printf("image token:   "); print_token(tok, img); putchar('\n'); }
    else printf("image token:    none (text-only model)\n");

    tw_st_set *set = NULL;
    tw_src src = tw_src_dir(dir);
    if ((packed ? tw_st_open_file(dir, &set) : tw_st_open_dir(dir, &set)) == TW_OK) {
        size_t count[TW_DT_COUNT] = {0};
        uint64_t bytes[TW_DT_COUNT] = {0}, params = 0;
        for (size_t i = 0; i < tw_st_count(set); i++) {
            const tw_tensor *t = tw_st_at(set, i);
            if ((int)t->type < 0 || t->type >= TW_DT_COUNT) continue;
            count[t->type]++;
            bytes[t->type] += t->nbytes;
            params += (uint64_t)tw_tensor_nelem(t);
        }
        printf("weights:        %zu tensors, %.2fM parameters, %.1f MB on disk;", tw_st_count(set), params / 1e6,
               tw_st_bytes(set) / 1e6);
        for (int d = 0; d < TW_DT_COUNT; d++)
            if (count[d]) printf(" %s x%zu (%.1f MB)", tw_dtype_name((tw_dtype)d), count[d], bytes[d] / 1e6);
        putchar('\n');
        if (packed && tw_quant_src(set, dir, &src) != TW_OK) src = tw_src_dir(dir);
    } else {
        printf("weights:        (cannot list: %s)\n", tw_last_error());
    }
    printf("vocabulary:     %d tokens; <bos>:", tw_tokenizer_vocab_size(tok));
    int32_t bos = tw_tokenizer_bos(tok);
    if (bos >= 0) print_token(tok, bos);
    else printf(" none");
    putchar('\n');
    const int32_t *stops = NULL;
    size_t n_stops = tw_model_stop_ids(m, &stops);
    printf("stop ids:      ");
    for (size_t i = 0; i < n_stops; i++) print_token(tok, stops[i]);
    if (!n_stops) printf(" none");
    putchar('\n');
    printf("chat template:  %s\n", template_source(&src, buf, sizeof buf));
    tw_src_free(&src);
    tw_st_close(set);
    printf("final softcap:  %s\n", g.final_softcap < 0 ? "as config.json says" : g.final_softcap ? "on" : "off");
    printf("kernels:        %s (cpu: %s)\n", tw_kpath_name(tw_kernels_init()), tw_cpu_features());
    printf("build:          %s\n", tw_build_info());
    tw_model_free(m);
    return 0;
}

/* ============================================================================================ */
/* main                                                                                         */

/* bench and quantize print their own help */
static void help_bench(void) {
    char *a[] = { "bench", "--help", NULL };
    tower_cmd_bench(2, a);
}

static void help_quantize(void) {
    char *a[] = { "quantize", "--help", NULL };
    tower_cmd_quantize(2, a);
}

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
        {"run", cmd_run, help_run},             {"chat", cmd_chat, help_chat},
        {"translate", cmd_translate, help_translate}, {"tokenize", cmd_tokenize, help_tokenize},
        {"dump", cmd_dump, help_dump},          {"info", cmd_info, help_info},
        {"bench", tower_cmd_bench, help_bench}, {"quantize", tower_cmd_quantize, help_quantize},
    };
    static char label[64];
    if (argc < 2) {
        fprintf(stderr, "usage: tower COMMAND [options]   (commands: run, chat, translate, tokenize, dump, info, bench, quantize)\n"
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
    usage_error("unknown command '%s' (commands: run, chat, translate, tokenize, dump, info, bench, quantize)", c);
}
