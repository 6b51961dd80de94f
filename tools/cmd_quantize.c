/*
** cmd_quantize.c — `tower quantize -m MODEL -o OUT --type q8|q4 [--keep-vision-bf16]
** [--keep-embed-bf16] [-t N] [--offline] [-q]`: writes a single-file quantized checkpoint
** (tw_model_quantize, docs/quantization.md) and prints, per tensor, how it was stored and the RMS
** relative error the quantization introduced. `tower run -m OUT ...` loads the file directly.
*/
#include "commands.h"
#include "cli.h"   /* progress_cb */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct qstats {
    bool   quiet;
    int    n_quant, n_kept;
    double worst, sum;      /* rel. RMS error over quantized tensors */
    const char *worst_name;
    char   worst_buf[256];
} qstats;

static void report(void *user, const char *name, const char *how, int q, int64_t N, int64_t K, double rel) {
    qstats *s = user;
    if (q) {
        s->n_quant++;
        s->sum += rel;
        if (rel >= s->worst) {
            s->worst = rel;
            snprintf(s->worst_buf, sizeof s->worst_buf, "%s", name);
            s->worst_name = s->worst_buf;
        }
    } else {
        s->n_kept++;
    }
    if (s->quiet) return;
    if (q) printf("  %-72s %-5s [%lld, %lld]  rel. RMS error %.3e\n", name, how, (long long)N, (long long)K, rel);
    else printf("  %-72s %-5s kept\n", name, how);
}

/* --help: on stdout, exit 0; after a usage mistake: on stderr, exit 2 */
static int usage(FILE *f) {
    fprintf(f, "usage: tower quantize -m MODEL -o OUT.tower.safetensors --type q8|q4 [--keep-vision-bf16]\n"
                    "                      [--keep-embed-bf16] [-t THREADS] [--offline] [-q]\n"
                    "  -m, --model MODEL   checkpoint directory or org/name[@rev], downloaded if needed\n"
                    "                      (default: $TOWER_MODEL)\n"
                    "  -o, --output FILE   the single-file checkpoint to write (atomically)\n"
                    "  --type q8|q4        Q8_0 (8-bit) or Q4_0 (4-bit) blocks of 32 for the matrices\n"
                    "  --keep-vision-bf16  vision tower and projector stay as stored\n"
                    "  --keep-embed-bf16   the token embedding (tied LM head) stays as stored\n"
                    "  -t, --threads N     worker threads (default 0: every core)\n"
                    "  --offline           never use the network (also HF_HUB_OFFLINE=1)\n"
                    "  -q, --quiet         no per-tensor lines, only the summary\n"
                    "Exit status: 0 success, 1 error (message on stderr), 2 wrong usage.\n"
                    "example:\n"
                    "  tower quantize -m utter-project/TowerVision-2B -o TowerVision-2B-q8.tower.safetensors --type q8\n");
    return f == stdout ? 0 : 2;
}

int tower_cmd_quantize(int argc, char **argv) {
    const char *model = getenv("TOWER_MODEL"), *out = NULL;   /* -m's default, as in every command */
    tw_quantize_params o = tw_quantize_default_params();
    o.type = NULL;
    qstats s = { 0 };
    bool offline = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has) out = argv[++i];
        else if (!strcmp(a, "--type") && has) o.type = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) o.n_threads = (int)parse_long(a, argv[++i], 0, 4096);
        else if (!strcmp(a, "--keep-vision-bf16")) o.keep_vision_bf16 = 1;
        else if (!strcmp(a, "--keep-embed-bf16")) o.keep_embed_bf16 = 1;
        else if (!strcmp(a, "--offline")) offline = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) s.quiet = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else {
            fprintf(stderr, "tower quantize: unknown or incomplete option \"%s\"\n", a);
            return usage(stderr);
        }
    }
    if (!model || !out || !o.type) return usage(stderr);
    char qname[8];   /* "q8_0", "q4_0": the names the file and docs/quantization.md use */
    if (!strcmp(o.type, "q8") || !strcmp(o.type, "q8_0")) snprintf(qname, sizeof qname, "q8_0");
    else if (!strcmp(o.type, "q4") || !strcmp(o.type, "q4_0")) snprintf(qname, sizeof qname, "q4_0");
    else {
        fprintf(stderr, "tower quantize: --type \"%s\": expected q8 or q4\n", o.type);
        return 2;
    }
    char *dir = NULL;
    tw_model_params p = tw_model_default_params();
    p.offline = offline;
    if (isatty(STDERR_FILENO)) p.progress = progress_cb;
    tw_status st = tw_model_resolve(model, &p, &dir);
    if (st) {
        fprintf(stderr, "tower: error: %s\n", tw_last_error());
        return 1;
    }
    o.report = report;
    o.user_data = &s;
    double t0 = now_ms();
    printf("quantizing %s -> %s (%s%s%s)\n", dir, out, qname,
           o.keep_vision_bf16 ? ", vision kept" : "", o.keep_embed_bf16 ? ", embeddings kept" : "");
    st = tw_model_quantize(dir, out, &o);
    tw_free(dir);
    if (st) {
        fprintf(stderr, "tower: error: %s\n", tw_last_error());
        return 1;
    }
    struct stat fst;
    uint64_t bytes = stat(out, &fst) == 0 ? (uint64_t)fst.st_size : 0;
    printf("%d tensors quantized, %d kept; rel. RMS error mean %.3e, worst %.3e (%s); %.1f MB in %.1f s\n",
           s.n_quant, s.n_kept, s.n_quant ? s.sum / s.n_quant : 0.0, s.worst, s.worst_name ? s.worst_name : "-",
           (double)bytes / 1e6, (now_ms() - t0) / 1e3);
    return 0;
}
