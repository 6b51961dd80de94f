/*
** cmd_bench.c — `tower bench`: the output of the benchmark whose engine is in the library
** (tw_bench_* in include/tower.h, src/bench/bench_run.c); its options are parsed by tools/cli.c.
** Speed of vision, prefill, decode and time to first token on random weights of the exact
** TowerVision shapes (--shape 2b|9b|all, nothing downloaded) or on a checkpoint (-m MODEL, as in
** every other command), each figure beside the fraction of this machine's limit measured in the
** same run. docs/bench.md.
*/
#include "commands.h"
#include "cli.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- help ------------------------------------------------------------------------------------ */

void tower_help_bench(void) {
    printf(
        "usage: tower bench [--shape 2b|9b|all | -m MODEL] [options]\n"
        "Measures vision, prefill, decode and time to first token on random weights of the exact\n"
        "TowerVision shapes built in memory (nothing is downloaded), and prints beside each figure\n"
        "the fraction of this machine's limit (read bandwidth, multiply-add peak) measured in the run.\n"
        "\n"
        "  --shape 2b|9b|all   random weights of these model shapes (default 2b)\n"
        "  -m, --model MODEL   bench a checkpoint instead: directory, .tower.safetensors file or\n"
        "                      org/name[@rev], as for run (--checkpoint MODEL: the old spelling)\n"
        "      --offline       never use the network for -m (also HF_HUB_OFFLINE=1)\n"
        "  -t, --threads N     threads (default 0: every core)\n"
        "  --reps N            repetitions of the short measurements; the best is reported (default 2,\n"
        "                      --quick 1); the image encode, TTFT and long prefill run once\n"
        "  --decode N          tokens per decode measurement (default 16, --quick 4)\n"
        "  --batch N           N sequences decode together, one forward per step (tw_seq_eval_batch);\n"
        "                      the decode figures are then their tokens/s in all (default 1, at most 64)\n"
        "  --type T            weight type of the random model: bf16 (default), f16, f32, q8, q4\n"
        "  --kv-type T         KV cache element type: f16 (default here), bf16, f32\n"
        "  --matmul f32|bf16   matrix products with f32 activations (the default) or rounded to bf16\n"
        "                      (TOWER_MATMUL=bf16: vdpbf16ps, faster, not within the f32 tolerances)\n"
        "  --distinct N        9B: distinct text layers, cycled over the 42 (default 4; 0 = all)\n"
        "  --quick             small sizes for CI: prefill 32/128, decode at 16/128, no 7-tile image\n"
        "  --skip-vision       no vision figures and no TTFT\n"
        "  --skip-ttft         no 7-tile image and no TTFT (the long prefill still runs)\n"
        "  --skip-2b, --skip-9b  with --shape all\n"
        "  --json FILE         also write the results as JSON (\"-\": to stdout, the table to stderr)\n"
        "\n"
        "Exit status: 0 success (also when --type names a type this build cannot make: skipped),\n"
        "1 error (message on stderr), 2 wrong usage.\n"
        "\n"
        "examples:\n"
        "  tower bench                       # TowerVision-2B shapes, bf16\n"
        "  tower bench --shape all --json bench.json\n"
        "  tower bench --type q4 --quick\n"
        "  tower bench -m ./TowerVision-2B-q8.tower.safetensors --skip-ttft\n");
}

/* progress lines of the library's benchmark, on stderr */
static void log_line(void *user, const char *line) {
    (void)user;
    fprintf(stderr, line[0] == ' ' ? "%s\n" : "tower bench: %s\n", line);
}

/* ---- output ------------------------------------------------------------------------------------- */

/* ---- output ------------------------------------------------------------------------------------- */

static void fmt_time(char *b, size_t n, double ms) {
    if (ms < 10) snprintf(b, n, "%.2f ms", ms);
    else if (ms < 1000) snprintf(b, n, "%.0f ms", ms);
    else if (ms < 100000) snprintf(b, n, "%.2f s", ms / 1e3);
    else snprintf(b, n, "%.1f s", ms / 1e3);
}

static void fmt_value(char *b, size_t n, const tw_bench_figure *f, double v) {
    if (f->is_time) fmt_time(b, n, v);
    else snprintf(b, n, v < 1000 ? "%.1f tok/s" : "%.0f tok/s", v);
}

static void fmt_pct(char *b, size_t n, double x) {
    if (x > 0) snprintf(b, n, "%.0f%%", 100 * x);
    else snprintf(b, n, "-");
}

static void fmt_si(char *b, size_t n, double x, const char *unit) {   /* 653 GFLOP, 5.24 GB, 210 KB */
    const char *p[] = { "", "K", "M", "G", "T" };
    int i = 0;
    while (x >= 1000 && i < 4) x /= 1000, i++;
    snprintf(b, n, x < 10 ? "%.2f %s%s" : x < 100 ? "%.1f %s%s" : "%.0f %s%s", x, p[i], unit);
}

static void print_table(FILE *out, const tw_bench_machine *mc, const tw_bench_result *R) {
    char wb[24], tb[24];
    fmt_si(wb, sizeof wb, (double)R->weight_bytes, "B");
    fmt_si(tb, sizeof tb, R->decode_weight_bytes, "B");
    fprintf(out, "\n%s: %s\n", R->name, R->source);
    if (R->note[0]) fprintf(out, "  %s\n", R->note);
    fprintf(out, "  weights in memory %s (built in %.1f s); weights read per decoded token %s\n", wb, R->build_s, tb);
    fprintf(out, "\n%-33s %13s %13s  %-21s %8s %8s  %-22s %7s\n", "figure", "value", "limit", "limit from",
            "of limit", "of bf16", "llama.cpp (issue text)", "speedup");
    for (int i = 0; i < TW_BENCH_N_FIGURES; i++) {
        const tw_bench_figure *f = &R->f[i];
        char v[32], lv[32], basis[48], w[24], p1[16], p2[16], sp[16];
        if (!f->done) {
            fprintf(out, "%-33s %13s  (skipped: %s)\n", f->label, "-", f->skip[0] ? f->skip : "not measured");
            continue;
        }
        bool decode = i == TW_BENCH_TG_SHORT || i == TW_BENCH_TG_LONG;
        fmt_value(v, sizeof v, f, f->value);
        fmt_value(lv, sizeof lv, f, f->limit);
        if (decode) {
            fmt_si(w, sizeof w, f->work, "B");
            snprintf(basis, sizeof basis, "%s at %.0f GB/s", w, f->bw_gbs > 0 ? f->bw_gbs : mc->read_gbs);
        } else {
            fmt_si(w, sizeof w, f->work, "FLOP");
            snprintf(basis, sizeof basis, "%s at FMA peak", w);
        }
        fmt_pct(p1, sizeof p1, f->frac);
        fmt_pct(p2, sizeof p2, decode ? 0 : f->frac_bf16);
        if (f->speedup > 0) snprintf(sp, sizeof sp, "%.2fx", f->speedup);
        else snprintf(sp, sizeof sp, "-");
        fprintf(out, "%-33s %13s %13s  %-21s %8s %8s  %-22s %7s\n", f->label, v, lv, basis, p1, p2,
                f->ref_text[0] ? f->ref_text : "-", sp);
    }
    char rss[24];
    fmt_si(rss, sizeof rss, (double)R->peak_rss, "B");
    fprintf(out, "%-33s %13s  (getrusage ru_maxrss: the whole process so far)\n", "peak RSS", rss);
}

static json_t *figure_json(const tw_bench_figure *f) {
    json_t *o = json_object();
    json_object_set_new(o, "label", json_string(f->label));
    if (!f->done) {
        json_object_set_new(o, "skipped", json_string(f->skip[0] ? f->skip : "not measured"));
        return o;
    }
    json_object_set_new(o, "value", json_real(f->value));
    json_object_set_new(o, "unit", json_string(f->is_time ? "ms" : "tokens/s"));
    json_t *reps = json_array();
    for (int i = 0; i < f->n_reps; i++) json_array_append_new(reps, json_real(f->reps[i]));
    json_object_set_new(o, "reps", reps);
    json_object_set_new(o, f->is_time || strstr(f->label, "prefill") ? "flops" : "bytes_per_token",
                        json_real(f->work));
    json_object_set_new(o, "limit", json_real(f->limit));
    if (f->bw_gbs > 0) json_object_set_new(o, "read_bandwidth_gbs", json_real(f->bw_gbs));
    json_object_set_new(o, "fraction", json_real(f->frac));
    if (f->frac_bf16 > 0) json_object_set_new(o, "fraction_of_bf16_peak", json_real(f->frac_bf16));
    if (f->ref > 0) {
        json_object_set_new(o, "llama_cpp_issue", json_real(f->ref));
        json_object_set_new(o, "llama_cpp_note", json_string(f->ref_text));
        json_object_set_new(o, "speedup", json_real(f->speedup));
    }
    return o;
}

static const char *fig_keys[TW_BENCH_N_FIGURES] = { "vision_tile", "vision_image_7_tiles", "prefill_short", "prefill_long",
                                         "decode_short_ctx", "decode_long_ctx", "ttft_image" };

static int write_json(const char *path, const tw_bench_machine *mc, const tw_bench_result *R, int n) {
    json_t *root = json_object(), *mj = json_object(), *models = json_array();
    json_object_set_new(root, "tool", json_string("tower bench"));
    json_object_set_new(root, "build", json_string(tw_build_info()));
    json_object_set_new(root, "quick", json_boolean(g.quick));
    json_object_set_new(root, "decode_batch", json_integer(g.n_batch > 1 ? g.n_batch : 1));
    json_object_set_new(mj, "cpu", json_string(mc->cpu));
    json_object_set_new(mj, "threads", json_integer(mc->threads));
    json_object_set_new(mj, "kernels", json_string(mc->kernels));
    json_object_set_new(mj, "matmul_activations", json_string(mc->bf16_activations ? "bf16" : "f32"));
    json_object_set_new(mj, "cpu_features", json_string(mc->cpu_features));
    json_object_set_new(mj, "read_bandwidth_gbs", json_real(mc->read_gbs));
    json_object_set_new(mj, "read_bandwidth_buffer_bytes", json_integer((json_int_t)mc->read_buffer_bytes));
    json_object_set_new(mj, "fma_f32_gflops", json_real(mc->fma_gflops));
    json_object_set_new(mj, "fma_isa", json_string(mc->fma_isa));
    json_object_set_new(mj, "bf16_dot_gflops", json_real(mc->bf16_gflops));
    json_object_set_new(mj, "int8_dot_gops", json_real(mc->int8_gops));
    json_object_set_new(mj, "load_average_at_start", json_real(mc->load1));
    json_object_set_new(root, "machine", mj);
    for (int k = 0; k < n; k++) {
        const tw_bench_result *r = &R[k];
        json_t *mo = json_object(), *fj = json_object();
        json_object_set_new(mo, "name", json_string(r->name));
        json_object_set_new(mo, "source", json_string(r->source));
        json_object_set_new(mo, "type", json_string(r->type));
        if (r->note[0]) json_object_set_new(mo, "note", json_string(r->note));
        json_object_set_new(mo, "build_s", json_real(r->build_s));
        json_object_set_new(mo, "weight_bytes_in_memory", json_integer((json_int_t)r->weight_bytes));
        json_object_set_new(mo, "weight_bytes_per_token", json_real(r->decode_weight_bytes));
        json_object_set_new(mo, "image_tokens", json_integer(r->n_image_tokens));
        json_object_set_new(mo, "prompt_tokens", json_integer(r->n_prompt));
        json_object_set_new(mo, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss));
        for (int i = 0; i < TW_BENCH_N_FIGURES; i++) json_object_set_new(fj, fig_keys[i], figure_json(&r->f[i]));
        json_object_set_new(mo, "figures", fj);
        json_array_append_new(models, mo);
    }
    json_object_set_new(root, "models", models);
    int rc = 0;
    if (strcmp(path, "-") == 0) {
        rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) ? 1 : 0;
        fputc('\n', stdout);
    } else if (json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
        fprintf(stderr, "tower bench: error: cannot write %s\n", path);
        rc = 1;
    }
    json_decref(root);
    return rc;
}

/* ---- main --------------------------------------------------------------------------------------- */

static int bench_fail(const char *what) {
    fprintf(stderr, "tower bench: error: %s%s%s\n", what ? what : "", what ? ": " : "", tw_last_error());
    return 1;
}

int tower_cmd_bench(int argc, char **argv) {
    parse_options(argc, argv, C_BENCH, tower_help_bench);
    tw_bench_params bp = tw_bench_default_params();
    bp.checkpoint = g.model;
    bp.offline = g.offline;
    bp.type = g.type;
    bp.n_threads = g.n_threads;
    bp.reps = g.reps ? g.reps : g.quick ? 1 : 2;
    bp.n_decode = g.n_decode;
    bp.n_batch = g.n_batch;
    bp.n_distinct = g.n_distinct;
    bp.quick = g.quick;
    bp.skip_vision = g.skip_vision;
    bp.skip_ttft = g.skip_ttft;
    if (g.kv_type_set) bp.kv_type = g.kv_type;   /* f16 unless asked: what long decodes use */
    bp.log = log_line;
    const char *shape = g.shape, *ck = g.model, *type = g.type;
    /* "tiny": a few small layers (tests/test_bench.c), not a real model */
    if (strcmp(shape, "2b") && strcmp(shape, "9b") && strcmp(shape, "all") && strcmp(shape, "tiny"))
        usage_error("option --shape: expected 2b, 9b or all, got '%s'", shape);
    /* --model used to name the shapes: say so rather than look for a checkpoint called "2b" */
    struct stat st;
    if (ck && (!strcmp(ck, "2b") || !strcmp(ck, "9b") || !strcmp(ck, "all") || !strcmp(ck, "tiny")) && stat(ck, &st) != 0)
        usage_error("-m/--model names a checkpoint, as in every command; for the model shapes write --shape %s", ck);
    if (strcmp(type, "bf16") && strcmp(type, "f16") && strcmp(type, "f32") && strcmp(type, "q8") && strcmp(type, "q4"))
        usage_error("option --type: expected bf16, f16, f32, q8 or q4, got '%s'", type);
    if (!ck && !tw_bench_type_ok(type)) {
        /* quantized types need the quant module (src/cpu/quant.h) in this build */
        fprintf(stderr, "tower bench: --type %s: skipped: this build cannot make %s weights (no quant module); "
                "use --type bf16, or -m a quantized checkpoint\n", type, type);
        return 0;
    }

    const char *presets[2];
    int n_models = 0;
    if (ck) presets[n_models++] = NULL;
    else {
        bool all = strcmp(shape, "all") == 0;
        if ((all && !g.skip_2b) || strcmp(shape, "2b") == 0) presets[n_models++] = "2b";
        if ((all && !g.skip_9b) || strcmp(shape, "9b") == 0) presets[n_models++] = "9b";
        if (strcmp(shape, "tiny") == 0) presets[n_models++] = "tiny";
    }
    if (!n_models) usage_error("nothing to do (every model skipped)");

    /* ---- the machine's limits, measured now ---- */
    tw_bench_machine mc;
    if (tw_bench_machine_init(&mc, bp.n_threads, g.matmul) != TW_OK) return bench_fail(NULL);
    if (g.matmul && strcmp(g.matmul, "bf16") == 0 && !mc.bf16_activations)
        fprintf(stderr, "tower bench: --matmul bf16: this CPU or kernel path has no bf16 dot product; "
                "measuring the f32 path\n");
    fprintf(stderr, "tower bench: measuring this machine's limits...\n");
    if (tw_bench_machine_measure(&mc, bp.quick) != TW_OK) return bench_fail("thread pool");

    tw_bench_result *R = calloc((size_t)n_models, sizeof *R);
    if (!R) {
        fprintf(stderr, "tower bench: error: results: out of memory\n");
        return 1;
    }
    int rc = 0;
    int done = 0;
    for (int k = 0; k < n_models && rc == 0; k++) {   /* a model that failed has no table */
        tw_bench_params p = bp;
        p.shape = presets[k];
        if (tw_bench_run(&p, &mc, &R[k]) != TW_OK) rc = bench_fail(NULL);
        else done++;
    }
    if (done) {
        fprintf(stderr, "tower bench: measuring the limits again...\n");
        if (tw_bench_machine_measure(&mc, bp.quick) == TW_OK)
            for (int k = 0; k < done; k++) tw_bench_finish(&R[k], &mc, bp.quick);
    }

    FILE *out = g.json && strcmp(g.json, "-") == 0 ? stderr : stdout;
    fprintf(out, "\ntower bench — %s, %d threads, kernels %s, matmul activations %s%s\n", mc.cpu, mc.threads,
            mc.kernels, mc.bf16_activations ? "bf16 (--matmul bf16)" : "f32", bp.quick ? " (--quick: small sizes)" : "");
    fprintf(out, "machine limits measured in this run: read %.1f GB/s (%zu MB buffer); f32 FMA %.0f GFLOP/s (%s); "
            "bf16 dot %.0f GFLOP/s; int8 dot %.0f GOP/s\n", mc.read_gbs, mc.read_buffer_bytes >> 20, mc.fma_gflops,
            mc.fma_isa, mc.bf16_gflops, mc.int8_gops);
    if (mc.load1 > 0.5 * mc.threads)
        fprintf(out, "WARNING: load average %.1f at the start on %d cores: other processes shared the CPU, the "
                "figures and limits are disturbed\n", mc.load1, mc.n_cpus);
    if (g.n_batch > 1)
        fprintf(out, "decode: %d sequences step together (tw_seq_eval_batch); the figure is their tokens/s in all, "
                "the bytes per token the weights / %d + one KV cache\n", g.n_batch, g.n_batch);
    fprintf(out, "limits: decode = read bandwidth (measured beside each decode figure) / bytes read per token "
            "(weights + KV cache); vision, prefill "
            "and TTFT = FLOPs / f32 FMA peak (\"of bf16\": / vdpbf16ps peak)\n");
    if (!bp.quick && done)
        fprintf(out, "prefill %d = the first %d positions of the TTFT prompt; decode runs after rewinding that "
                "sequence to the context shown\n", 5000, 5000);
    for (int k = 0; k < done; k++) print_table(out, &mc, &R[k]);
    if (g.json && write_json(g.json, &mc, R, done)) rc = 1;
    free(R);
    return rc;
}
