/*
** cmd_quantize.c — `tower quantize -m MODEL -o OUT --type q8|q4 [--keep-vision-bf16]
** [--keep-embed-bf16] [-t N] [--offline] [-q]`: writes a single-file quantized checkpoint
** (tw_model_quantize, docs/quantization.md) and prints, per tensor, how it was stored and the RMS
** relative error the quantization introduced. `tower run -m OUT ...` loads the file directly.
** Options are parsed by tools/cli.c, as for every command.
*/
#include "commands.h"
#include "cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

void tower_help_quantize(void) {
    printf("usage: tower quantize -m MODEL -o OUT.tower.safetensors --type q8|q4 [--keep-vision-bf16]\n"
           "                      [--keep-embed-bf16] [-t THREADS] [--offline] [-q]\n\n"
           "Writes the checkpoint as one file of Q8_0 or Q4_0 matrices (config, tokenizer and chat template\n"
           "embedded) that every command loads with -m, and prints how each tensor was stored and the RMS\n"
           "relative error the quantization introduced.\n\n"
           "  -m, --model MODEL   checkpoint directory or org/name[@rev], downloaded if needed\n"
           "                      (default: $TOWER_MODEL)\n"
           "  -o, --output FILE   the single-file checkpoint to write (atomically)\n"
           "  --type q8|q4        Q8_0 (8-bit) or Q4_0 (4-bit) blocks of 32 for the matrices\n"
           "  --keep-vision-bf16  vision tower and projector stay as stored\n"
           "  --keep-embed-bf16   the token embedding (tied LM head) stays as stored\n"
           "  -t, --threads N     worker threads (default 0: every core)\n"
           "  --offline           never use the network (also HF_HUB_OFFLINE=1)\n"
           "  -q, --quiet         no per-tensor lines, only the summary\n\n"
           "Exit status: 0 success, 1 error (message on stderr), 2 wrong usage.\n"
           "example:\n"
           "  tower quantize -m utter-project/TowerVision-2B -o TowerVision-2B-q8.tower.safetensors --type q8\n");
}

int tower_cmd_quantize(int argc, char **argv) {
    parse_options(argc, argv, C_QUANTIZE, tower_help_quantize);
    require_model();
    if (!g.out) usage_error("missing -o OUT.tower.safetensors");
    if (!g.type) usage_error("missing --type q8|q4");
    char qname[8];   /* "q8_0", "q4_0": the names the file and docs/quantization.md use */
    if (!strcmp(g.type, "q8") || !strcmp(g.type, "q8_0")) snprintf(qname, sizeof qname, "q8_0");
    else if (!strcmp(g.type, "q4") || !strcmp(g.type, "q4_0")) snprintf(qname, sizeof qname, "q4_0");
    else usage_error("option --type: expected q8 or q4, got '%s'", g.type);
    tw_quantize_params o = tw_quantize_default_params();
    o.type = g.type;
    o.keep_vision_bf16 = g.keep_vision;
    o.keep_embed_bf16 = g.keep_embed;
    o.n_threads = g.n_threads;
    qstats s = { .quiet = g.quiet };
    char *dir = NULL;
    tw_model_params p = model_params();   /* --offline, download progress */
    if (tw_model_resolve(g.model, &p, &dir) != TW_OK) return fail_lib();
    o.report = report;
    o.user_data = &s;
    double t0 = now_ms();
    printf("quantizing %s -> %s (%s%s%s)\n", dir, g.out, qname,
           o.keep_vision_bf16 ? ", vision kept" : "", o.keep_embed_bf16 ? ", embeddings kept" : "");
    tw_status st = tw_model_quantize(dir, g.out, &o);
    tw_free(dir);
    if (st != TW_OK) return fail_lib();
    struct stat fst;
    uint64_t bytes = stat(g.out, &fst) == 0 ? (uint64_t)fst.st_size : 0;
    printf("%d tensors quantized, %d kept; rel. RMS error mean %.3e, worst %.3e (%s); %.1f MB in %.1f s\n",
           s.n_quant, s.n_kept, s.n_quant ? s.sum / s.n_quant : 0.0, s.worst, s.worst_name ? s.worst_name : "-",
           (double)bytes / 1e6, (now_ms() - t0) / 1e3);
    return 0;
}
