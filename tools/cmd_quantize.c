/*
** cmd_quantize.c — `tower quantize -m MODEL -o OUT --type q8|q4 [--keep-vision-bf16]
** [--keep-embed-bf16] [-t N] [-q]`: writes a single-file quantized checkpoint (src/cpu/quant.h,
** docs/quantization.md) and prints, per tensor, how it was stored and the RMS relative error the
** quantization introduced. `tower run -m OUT ...` loads the file directly.
*/
#include "commands.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct qstats {
    bool   quiet;
    int    n_quant, n_kept;
    double worst, sum;      /* rel. RMS error over quantized tensors */
    const char *worst_name;
    char   worst_buf[256];
} qstats;

static void report(void *user, const char *name, const char *how, int64_t N, int64_t K, double rel) {
    qstats *s = user;
    bool q = tw_quant_parse(how, &(tw_dtype){ 0 });
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

static int usage(void) {
    fprintf(stderr, "usage: tower quantize -m MODEL -o OUT.tower.safetensors --type q8|q4 [--keep-vision-bf16]\n"
                    "                      [--keep-embed-bf16] [-t THREADS] [-q]\n"
                    "  MODEL: a checkpoint directory or a Hugging Face repo id (downloaded if needed)\n");
    return 2;
}

int tower_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *type = NULL;
    tw_quant_opts o = { 0 };
    qstats s = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has) out = argv[++i];
        else if (!strcmp(a, "--type") && has) type = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) o.n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--keep-vision-bf16")) o.keep_vision = true;
        else if (!strcmp(a, "--keep-embed-bf16")) o.keep_embed = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) s.quiet = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage() - 2;
        else {
            fprintf(stderr, "tower quantize: unknown or incomplete option \"%s\"\n", a);
            return usage();
        }
    }
    if (!model || !out || !type) return usage();
    if (!tw_quant_parse(type, &o.type)) {
        fprintf(stderr, "tower quantize: --type \"%s\": expected q8 or q4\n", type);
        return 2;
    }
    char *dir = NULL;
    tw_model_params p = tw_model_default_params();
    tw_status st = tw_model_resolve(model, &p, &dir);
    if (st) {
        fprintf(stderr, "tower: error: %s\n", tw_last_error());
        return 1;
    }
    o.report = report;
    o.user = &s;
    double t0 = tw_time_ms();
    printf("quantizing %s -> %s (%s%s%s)\n", dir, out, tw_quant_name(o.type),
           o.keep_vision ? ", vision kept" : "", o.keep_embed ? ", embeddings kept" : "");
    st = tw_quantize_model(dir, out, &o);
    free(dir);
    if (st) {
        fprintf(stderr, "tower: error: %s\n", tw_last_error());
        return 1;
    }
    tw_st_set *set = NULL;
    uint64_t bytes = tw_st_open_file(out, &set) == TW_OK ? tw_st_bytes(set) : 0;
    tw_st_close(set);
    printf("%d tensors quantized, %d kept; rel. RMS error mean %.3e, worst %.3e (%s); %.1f MB in %.1f s\n",
           s.n_quant, s.n_kept, s.n_quant ? s.sum / s.n_quant : 0.0, s.worst, s.worst_name ? s.worst_name : "-",
           (double)bytes / 1e6, (tw_time_ms() - t0) / 1e3);
    return 0;
}
