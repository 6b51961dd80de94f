/*
** cli.c — what every `tower` command shares: the one option table and its parser (an option means
** the same in every command that takes it), prompt reading, model loading with download progress,
** and the error conventions:
**   - a failing library call prints "tower: error: <tw_last_error()>" on stderr, exit 1;
**   - a usage mistake prints a one-line reason and a hint on stderr, exit 2;
**   - stdout carries only the requested output (generated text, ids, JSON lines, reports).
** tools/ is the only place in the project that prints and exits. docs/cli.md is the user's view.
*/
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ============================================================================================ */
/* Small helpers                                                                                */

const char *g_cmd = "tower";        /* "tower run", ... for messages           */

double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Usage mistake: reason + hint on stderr, exit 2. */
__attribute__((noreturn, format(printf, 1, 2)))
void usage_error(const char *fmt, ...) {
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
int fail(const char *fmt, ...) {
    va_list ap;
    fputs("tower: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* A library call failed: its message, exit code 1. */
int fail_lib(void) { return fail("%s", tw_last_error()); }

long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        usage_error("option %s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi, s);
    return v;
}

float parse_float(const char *opt, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        usage_error("option %s: expected a number in [%g, %g], got '%s'", opt, lo, hi, s);
    return v;
}

/* Reads a whole stream; *data is NUL-terminated (the text may contain NULs too). */
int read_stream(FILE *f, char **data, size_t *len) {
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

int read_path(const char *path, char **data, size_t *len) {
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
void print_piece(FILE *f, const char *p, size_t n) {
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

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ============================================================================================ */
/* Options                                                                                      */

enum {
    O_SYSTEM = 256, O_TOKENIZER, O_TEMP, O_TOP_K, O_TOP_P, O_MIN_P, O_REPEAT, O_PRESENCE, O_FREQUENCY,
    O_PENALTY_N, O_SEED, O_STOP, O_RAW, O_NO_SOFTCAP, O_SOFTCAP, O_TEMPLATE, O_OFFLINE, O_CTX, O_KV_TYPE, O_KERNELS,
    O_PRINT_IDS, O_SHOW_PROMPT, O_FROM, O_TO, O_LIST_LANG, O_LINES, O_NO_SPECIAL, O_JSONL, O_IDS,
    O_CHECK, O_IGNORE_EOS, O_IMAGE, O_IMAGE_TOKENS, O_VIDEO, O_VIDEO_FRAMES, O_VIDEO_FRAME, O_FRAMES,
    O_TYPE, O_KEEP_VISION, O_KEEP_EMBED, O_SHAPE, O_JSON, O_MATMUL, O_REPS, O_DECODE, O_BATCH, O_DISTINCT, O_QUICK,
    O_SKIP_VISION, O_SKIP_TTFT, O_SKIP_2B, O_SKIP_9B, O_LIMITS,
    O_HOST, O_PORT, O_PARALLEL, O_API_KEY, O_MEDIA_DIR, O_CORS, O_MAX_BODY, O_MAX_QUEUE, O_MAX_TOKENS, O_MAX_MEDIA,
    O_MAX_PIXELS, O_CACHE_MB, O_CACHE_SEQS, O_TIMEOUT, O_MAX_CONN, O_PREFILL_CHUNK, O_MEDIA_CACHE_MB, O_MAX_MEDIA_MB,
    O_FETCH_TIMEOUT, O_DATASET, O_OUT_DIR, O_TEXT_FIELD, O_MIN_SCORE, O_SCORE_FIELD, O_ON_ERROR, O_RESUME,
    O_FORCE, O_DROP_FLAGGED, O_LIMIT,
};

typedef struct cli_opt {
    struct option o;
    unsigned      cmds;   /* C_* mask of the subcommands that accept it */
} cli_opt;

static const cli_opt k_opts[] = {
    {{"model", required_argument, 0, 'm'}, C_ALL},
    {{"prompt", required_argument, 0, 'p'}, C_RUN | C_TRANSLATE | C_TOKENIZE},
    {{"file", required_argument, 0, 'f'}, C_RUN | C_TRANSLATE | C_TOKENIZE | C_DUMP},
    /* one option, two names: every command that reads its text from a file takes both */
    {{"prompt-file", required_argument, 0, 'f'}, C_RUN | C_TRANSLATE | C_TOKENIZE | C_DUMP},
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
    {{"no-final-softcap", no_argument, 0, O_NO_SOFTCAP}, C_GEN | C_DUMP | C_INFO | C_SERVE},
    {{"final-softcap", no_argument, 0, O_SOFTCAP}, C_GEN | C_DUMP | C_INFO | C_SERVE},
    {{"chat-template", required_argument, 0, O_TEMPLATE}, C_GEN | C_INFO | C_SERVE},
    {{"tokenizer", required_argument, 0, O_TOKENIZER}, C_GEN | C_DUMP | C_INFO | C_SERVE},
    {{"threads", required_argument, 0, 't'}, C_GEN | C_DUMP | C_INFO | C_QUANTIZE | C_BENCH | C_SERVE},
    {{"offline", no_argument, 0, O_OFFLINE}, C_ALL},
    {{"ctx", required_argument, 0, O_CTX}, C_GEN | C_DUMP | C_SERVE},
    {{"kv-type", required_argument, 0, O_KV_TYPE}, C_GEN | C_DUMP | C_BENCH | C_SERVE},
    {{"verbose", no_argument, 0, 'v'}, C_GEN | C_DUMP | C_SERVE},
    {{"print-ids", no_argument, 0, O_PRINT_IDS}, C_RUN | C_TRANSLATE},
    {{"show-prompt", no_argument, 0, O_SHOW_PROMPT}, C_RUN | C_TRANSLATE},
    {{"from", required_argument, 0, O_FROM}, C_TRANSLATE},
    {{"to", required_argument, 0, O_TO}, C_TRANSLATE},
    {{"list-languages", no_argument, 0, O_LIST_LANG}, C_TRANSLATE},
    {{"lines", no_argument, 0, O_LINES}, C_TRANSLATE},
    /* translate --dataset */
    {{"dataset", required_argument, 0, O_DATASET}, C_TRANSLATE},
    {{"out-dir", required_argument, 0, O_OUT_DIR}, C_TRANSLATE},
    {{"text-field", required_argument, 0, O_TEXT_FIELD}, C_TRANSLATE},
    {{"min-score", required_argument, 0, O_MIN_SCORE}, C_TRANSLATE},
    {{"score-field", required_argument, 0, O_SCORE_FIELD}, C_TRANSLATE},
    {{"on-error", required_argument, 0, O_ON_ERROR}, C_TRANSLATE},
    {{"resume", no_argument, 0, O_RESUME}, C_TRANSLATE},
    {{"force", no_argument, 0, O_FORCE}, C_TRANSLATE},
    {{"drop-flagged", no_argument, 0, O_DROP_FLAGGED}, C_TRANSLATE},
    {{"limit", required_argument, 0, O_LIMIT}, C_TRANSLATE},
    {{"no-special", no_argument, 0, O_NO_SPECIAL}, C_TOKENIZE},
    {{"jsonl", no_argument, 0, O_JSONL}, C_TOKENIZE},
    {{"ids", no_argument, 0, O_IDS}, C_TOKENIZE},
    {{"output", required_argument, 0, 'o'}, C_DUMP | C_QUANTIZE | C_TRANSLATE},
    {{"check-against", required_argument, 0, O_CHECK}, C_DUMP},
    {{"image", required_argument, 0, O_IMAGE}, C_GEN | C_DUMP},
    {{"image-tokens", no_argument, 0, O_IMAGE_TOKENS}, C_RUN | C_TRANSLATE},
    {{"video", required_argument, 0, O_VIDEO}, C_GEN | C_DUMP},
    {{"video-frames", required_argument, 0, O_VIDEO_FRAMES}, C_GEN | C_DUMP},
    {{"video-frame", required_argument, 0, O_VIDEO_FRAME}, C_GEN | C_DUMP},
    {{"frames", required_argument, 0, O_FRAMES}, C_GEN | C_DUMP | C_SERVE},
    /* quantize; --type is a weight type in both quantize and bench */
    {{"type", required_argument, 0, O_TYPE}, C_QUANTIZE | C_BENCH},
    {{"keep-vision-bf16", no_argument, 0, O_KEEP_VISION}, C_QUANTIZE},
    {{"keep-embed-bf16", no_argument, 0, O_KEEP_EMBED}, C_QUANTIZE},
    {{"quiet", no_argument, 0, 'q'}, C_QUANTIZE},
    /* bench; --checkpoint is -m's old name there */
    {{"checkpoint", required_argument, 0, 'm'}, C_BENCH},
    {{"shape", required_argument, 0, O_SHAPE}, C_BENCH},
    {{"json", required_argument, 0, O_JSON}, C_BENCH},
    {{"matmul", required_argument, 0, O_MATMUL}, C_GEN | C_DUMP | C_INFO | C_BENCH | C_SERVE},
    {{"kernels", required_argument, 0, O_KERNELS}, C_GEN | C_DUMP | C_INFO | C_SERVE},
    {{"reps", required_argument, 0, O_REPS}, C_BENCH},
    {{"decode", required_argument, 0, O_DECODE}, C_BENCH},
    {{"batch", required_argument, 0, O_BATCH}, C_BENCH | C_TRANSLATE},   /* bench: streams; translate: sequences */
    {{"distinct", required_argument, 0, O_DISTINCT}, C_BENCH},
    {{"quick", no_argument, 0, O_QUICK}, C_BENCH},
    {{"skip-vision", no_argument, 0, O_SKIP_VISION}, C_BENCH},
    {{"skip-ttft", no_argument, 0, O_SKIP_TTFT}, C_BENCH},
    {{"skip-2b", no_argument, 0, O_SKIP_2B}, C_BENCH},
    {{"skip-9b", no_argument, 0, O_SKIP_9B}, C_BENCH},
    {{"limits", no_argument, 0, O_LIMITS}, C_BENCH},
    /* serve */
    {{"host", required_argument, 0, O_HOST}, C_SERVE},
    {{"port", required_argument, 0, O_PORT}, C_SERVE},
    {{"parallel", required_argument, 0, O_PARALLEL}, C_SERVE},
    {{"api-key", required_argument, 0, O_API_KEY}, C_SERVE},
    {{"media-dir", required_argument, 0, O_MEDIA_DIR}, C_SERVE},
    {{"cors", required_argument, 0, O_CORS}, C_SERVE},
    {{"max-body-kb", required_argument, 0, O_MAX_BODY}, C_SERVE},
    {{"max-queue", required_argument, 0, O_MAX_QUEUE}, C_SERVE},
    {{"max-tokens", required_argument, 0, O_MAX_TOKENS}, C_SERVE},
    {{"max-media", required_argument, 0, O_MAX_MEDIA}, C_SERVE},
    {{"max-media-mb", required_argument, 0, O_MAX_MEDIA_MB}, C_SERVE},
    {{"max-pixels", required_argument, 0, O_MAX_PIXELS}, C_SERVE},
    {{"cache-mb", required_argument, 0, O_CACHE_MB}, C_SERVE},
    {{"cache-seqs", required_argument, 0, O_CACHE_SEQS}, C_SERVE},
    {{"media-cache-mb", required_argument, 0, O_MEDIA_CACHE_MB}, C_SERVE},
    {{"timeout", required_argument, 0, O_TIMEOUT}, C_SERVE},
    {{"fetch-timeout", required_argument, 0, O_FETCH_TIMEOUT}, C_SERVE},
    {{"max-connections", required_argument, 0, O_MAX_CONN}, C_SERVE},
    {{"prefill-chunk", required_argument, 0, O_PREFILL_CHUNK}, C_SERVE},
    {{"help", no_argument, 0, 'h'}, C_ALL},
};
#define N_OPTS (sizeof k_opts / sizeof k_opts[0])

cli g;

/* Parses argv (argv[0] = subcommand name) into g; positional arguments are not accepted. */
void parse_options(int argc, char **argv, unsigned cmd, void (*help)(void)) {
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

    free_options();            /* a second call in one process (tests) starts afresh */
    memset(&g, 0, sizeof g);
    g.cmd = cmd;
    g.sp = tw_sampler_default_params();
    g.final_softcap = cmd == C_DUMP ? 0 : -1;
    g.model = cmd == C_BENCH ? NULL : getenv("TOWER_MODEL");   /* bench without -m: random weights */
    g.shape = "2b";
    g.type = cmd == C_BENCH ? "bf16" : NULL;
    g.n_distinct = 4;
    g.n_frames = 32;   /* as TowerVideo was trained */
    g.host = "127.0.0.1";
    g.port = 8080;
    g.parallel = 4;
    g.cache_seqs = -1;
    g.max_queue = 64;
    g.max_media = 16;
    g.max_conn = 64;
    g.timeout_s = 30;
    g.max_body_kb = 64 * 1024;
    g.max_media_mb = 64;
    g.fetch_timeout_s = 30;
    g.cache_mb = 4096;
    g.media_cache_mb = 1024;
    g.max_tokens = 4096;
    g.prefill_chunk = 64;
    g.max_pixels = 0;
    g.api_key = cmd == C_SERVE ? getenv("TOWER_API_KEY") : NULL;
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
        case O_HOST: g.host = optarg; break;
        case O_PORT: g.port = (int)parse_long(name, optarg, 0, 65535); break;
        case O_PARALLEL: g.parallel = (int)parse_long(name, optarg, 1, 256); break;
        case O_API_KEY: g.api_key = optarg; break;
        case O_MEDIA_DIR: g.media_dir = optarg; break;
        case O_CORS: g.cors = optarg; break;
        case O_MAX_BODY: g.max_body_kb = parse_long(name, optarg, 1, 16L << 20); break;
        case O_MAX_QUEUE: g.max_queue = (int)parse_long(name, optarg, 1, 1 << 20); break;
        case O_MAX_TOKENS: g.max_tokens = (int32_t)parse_long(name, optarg, 1, 1 << 30); break;
        case O_MAX_MEDIA: g.max_media = (int)parse_long(name, optarg, 0, 4096); break;
        case O_MAX_MEDIA_MB: g.max_media_mb = parse_long(name, optarg, 1, 1 << 20); break;
        case O_MAX_PIXELS: g.max_pixels = (uint64_t)parse_long(name, optarg, 1, 1L << 40); break;
        case O_CACHE_MB: g.cache_mb = parse_long(name, optarg, 0, 1L << 30); break;
        case O_CACHE_SEQS: g.cache_seqs = (int)parse_long(name, optarg, 0, 4096); break;
        case O_MEDIA_CACHE_MB: g.media_cache_mb = parse_long(name, optarg, 1, 1L << 30); break;
        case O_TIMEOUT: g.timeout_s = (int)parse_long(name, optarg, 1, 86400); break;
        case O_FETCH_TIMEOUT: g.fetch_timeout_s = parse_long(name, optarg, 1, 86400); break;
        case O_MAX_CONN: g.max_conn = (int)parse_long(name, optarg, 1, 100000); break;
        case O_PREFILL_CHUNK: g.prefill_chunk = (int32_t)parse_long(name, optarg, 1, 1 << 20); break;
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
        case O_TOKENIZER: g.tokenizer_dir = optarg; break;
        case O_OFFLINE: g.offline = 1; break;
        case O_CTX: g.n_ctx = (int32_t)parse_long(name, optarg, 1, 1 << 30); break;
        case O_KV_TYPE:
            if (tw_kv_type_parse(optarg, &g.kv_type) != TW_OK) usage_error("option --kv-type: expected f32, f16 or bf16, got '%s'", optarg);
            g.kv_type_set = 1;
            break;
        case O_PRINT_IDS: g.print_ids = 1; break;
        case O_SHOW_PROMPT: g.show_prompt = 1; break;
        case O_FROM: g.from = optarg; break;
        case O_TO: g.to = optarg; break;
        case O_LIST_LANG: g.list_languages = 1; break;
        case O_LINES: g.lines = 1; break;
        case O_DATASET: g.dataset = optarg; break;
        case O_OUT_DIR: g.out_dir = optarg; break;
        case O_TEXT_FIELD:
            if (!*optarg) usage_error("option --text-field: the field name is empty");
            g.text_field = optarg;
            break;
        case O_MIN_SCORE: {   /* a double: 0.85 must compare equal to a score written as 0.85 */
            char *end;
            errno = 0;
            g.min_score = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(g.min_score == g.min_score))
                usage_error("option --min-score: expected a number, got '%s'", optarg);
            g.min_score_set = 1;
            break;
        }
        case O_SCORE_FIELD:
            if (!*optarg) usage_error("option --score-field: the field name is empty");
            g.score_field = optarg;
            break;
        case O_ON_ERROR:
            if (strcmp(optarg, "skip") && strcmp(optarg, "stop"))
                usage_error("option --on-error: expected skip or stop, got '%s'", optarg);
            g.on_error_skip = !strcmp(optarg, "skip");
            break;
        case O_RESUME: g.resume = 1; break;
        case O_FORCE: g.force = 1; break;
        case O_DROP_FLAGGED: g.drop_flagged = 1; break;
        case O_LIMIT: g.limit = parse_long(name, optarg, 1, 1L << 40); break;
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
        case O_TYPE: g.type = optarg; break;
        case O_KEEP_VISION: g.keep_vision = 1; break;
        case O_KEEP_EMBED: g.keep_embed = 1; break;
        case 'q': g.quiet = 1; break;
        case O_SHAPE: g.shape = optarg; break;
        case O_JSON: g.json = optarg; break;
        case O_MATMUL:
            if (strcmp(optarg, "f32") && strcmp(optarg, "bf16")) usage_error("option --matmul: expected f32 or bf16, got '%s'", optarg);
            g.matmul = optarg;
            break;
        case O_KERNELS: g.kernels = optarg; break;
        case O_REPS: g.reps = (int)parse_long(name, optarg, 1, 16); break;
        case O_DECODE: g.n_decode = (int)parse_long(name, optarg, 1, 4096); break;
        case O_BATCH: g.n_batch = (int)parse_long(name, optarg, 1, 64); break;
        case O_DISTINCT: g.n_distinct = (int)parse_long(name, optarg, 0, 4096); break;
        case O_QUICK: g.quick = 1; break;
        case O_SKIP_VISION: g.skip_vision = 1; break;
        case O_SKIP_TTFT: g.skip_ttft = 1; break;
        case O_SKIP_2B: g.skip_2b = 1; break;
        case O_SKIP_9B: g.skip_9b = 1; break;
        case O_LIMITS: g.limits_only = 1; break;
        case ':':
            if (optopt && optopt < 256) usage_error("option '-%c' needs a value", optopt);
            usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < 256) usage_error("unknown option '-%c'", optopt);
            usage_error("unknown option '%s'", name);
        }
    }
    if (optind < argc && (cmd & (C_RUN | C_TRANSLATE | C_TOKENIZE)))
        usage_error("unexpected argument '%s' (text goes after -p, in quotes)", argv[optind]);
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
}

void free_options(void) {
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
int blank(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return !*s;
}

int read_prompt(char **text, size_t *len) {
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

/* ============================================================================================ */
/* Progress of a job over items                                                                 */

void progress_start(cli_progress *p) {
    p->tty = isatty(STDERR_FILENO);
    p->t0 = now_ms();
    p->last = 0;
}

void format_duration(char *b, size_t cap, double s) {
    if (s < 60) snprintf(b, cap, "%.1fs", s);
    else if (s < 3600) snprintf(b, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(b, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void progress_draw(cli_progress *p, int force, const char *label, size_t done, size_t total, double tokens,
                   const char *extra) {
    if (!p->tty) return;
    double t = now_ms();
    if (!force && t - p->last < 200) return;
    p->last = t;
    double s = (t - p->t0) / 1e3;
    double ips = s > 0 ? done / s : 0, tps = s > 0 ? tokens / s : 0;
    char eta[32] = "-";
    if (ips > 0 && total >= done) format_duration(eta, sizeof eta, (double)(total - done) / ips);
    int w = total ? (int)(30 * (done < total ? done : total) / total) : 30;
    fprintf(stderr, "\r\033[K%-7s [%.*s%*s] %zu/%zu items  %.2f items/s  %.0f tok/s  ETA %s%s%s", label ? label : "", w,
            "##############################", 30 - w, "", done, total, ips, tps, eta, extra ? "  " : "", extra ? extra : "");
    fflush(stderr);
}

void progress_clear(const cli_progress *p) {
    if (p->tty) fputs("\r\033[K", stderr);
}

tw_model_params model_params(void) {
    tw_model_params p = tw_model_default_params();
    p.n_threads = g.n_threads;
    p.final_softcap = g.final_softcap;
    p.chat_template_file = g.chat_template;
    p.tokenizer_dir = g.tokenizer_dir;
    p.offline = g.offline;
    p.kernels = g.kernels;   /* checked by tw_model_load, which names the field */
    if (g.matmul) p.matmul = strcmp(g.matmul, "bf16") ? TW_MATMUL_F32 : TW_MATMUL_BF16;
    if (isatty(STDERR_FILENO)) p.progress = progress_cb;
    return p;
}

int require_model(void) {
    if (!g.model || !*g.model)
        usage_error("no model: give -m DIR, -m org/name or -m random:2b --tokenizer DIR (or set TOWER_MODEL)");
    return 0;
}

int load_model(tw_model **m) {
    require_model();
    tw_model_params p = model_params();
    double t0 = now_ms();
    if (tw_model_load(g.model, &p, m) != TW_OK) return fail_lib();
    if (g.verbose)
        fprintf(stderr, "[model %s: %s, %d layers, %d hidden, vocab %d, loaded in %.0f ms]\n", tw_model_dir(*m),
                tw_model_arch(*m), tw_model_n_layer(*m), tw_model_n_embd(*m), tw_model_n_vocab(*m), now_ms() - t0);
    return 0;
}
