/*
** test_bench.c — `tower bench` end to end on the "tiny" random model: the command runs (quick and
** full sizes, bf16 and every quantized type the build has, decode of a batch), its JSON parses, every figure that
** ran has a positive value and a fraction of the machine's limit in (0, 2); the work counts
** agree with hand-computed ones; a random model of the real 2B shapes is built with the exact
** tensor shapes (vision off, to keep it small: only the tensor structs are checked).
**
** The command lives in tools/ (options and output over the library's tw_bench_* entry points,
** options parsed by tools/cli.c like every command's); both are included here as llama2.c's
** test.c includes run.c. A usage mistake exits the process (status 2), so those checks run the
** command in a child. The work counts and the random models are checked through src/bench/bench.h.
*/
#include "../tools/cli.c"
#include "../tools/cmd_bench.c"

#include "bench.h"
#include "model.h"

#include <math.h>

#include "testhelp.h"

#include <sys/wait.h>
#include <unistd.h>

/* the exit status of `tower bench ARGS` run in a child process (usage mistakes exit) */
static int bench_status(char **argv, int argc) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        _exit(tower_cmd_bench(argc, argv));
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

static json_t *run_json(const char *const *args, int n, const char *path) {
    char *argv[32];
    argv[0] = "bench";
    for (int i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
    argv[n + 1] = "--json", argv[n + 2] = (char *)path;
    int rc = tower_cmd_bench(n + 3, argv);
    if (rc != 0) return NULL;
    json_error_t e;
    return json_load_file(path, 0, &e);
}

/* every measured figure: value > 0, 0 < fraction < 2 */
static int check_figures(json_t *root, int *n_done) {
    int bad = 0;
    json_t *models = json_object_get(root, "models"), *mo;
    size_t i;
    json_array_foreach(models, i, mo) {
        const char *k;
        json_t *f;
        json_object_foreach(json_object_get(mo, "figures"), k, f) {
            if (json_object_get(f, "skipped")) continue;
            double v = json_real_value(json_object_get(f, "value"));
            double fr = json_real_value(json_object_get(f, "fraction"));
            if (!(v > 0) || !(fr > 0 && fr < 2)) {
                fprintf(stderr, "figure %s: value %g fraction %g\n", k, v, fr);
                bad++;
            }
            (*n_done)++;
        }
        if (json_integer_value(json_object_get(mo, "peak_rss_bytes")) <= 0) bad++;
    }
    return bad;
}

int main(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/test_bench_%d.json", (int)getpid());

    /* quick, tiny */
    {
        const char *a[] = { "--shape", "tiny", "--quick", "--decode", "2" };
        json_t *j = run_json(a, 5, path);
        CHECK(j != NULL, "quick run writes JSON");
        int n = 0;
        if (j) {
            CHECK(check_figures(j, &n) == 0, "quick: figures in range");
            CHECK(n == 5, "quick: 5 figures measured (no image, no TTFT)");
            json_t *mc = json_object_get(j, "machine");
            CHECK(json_real_value(json_object_get(mc, "read_bandwidth_gbs")) > 0, "machine: bandwidth measured");
            CHECK(json_real_value(json_object_get(mc, "fma_f32_gflops")) > 0, "machine: FMA peak measured");
        }
        json_decref(j);
    }

    /* quick, tiny, 3 sequences decoding together (tw_seq_eval_batch) */
    {
        const char *a[] = { "--shape", "tiny", "--quick", "--decode", "2", "--batch", "3", "--skip-vision" };
        json_t *j = run_json(a, 8, path);
        CHECK(j != NULL, "--batch 3 run writes JSON");
        int n = 0;
        if (j) {
            CHECK(check_figures(j, &n) == 0, "--batch 3: figures in range");
            CHECK(n == 4, "--batch 3: 4 figures measured (prefill, decode)");
            CHECK(json_integer_value(json_object_get(j, "decode_batch")) == 3, "--batch 3 in the JSON");
            json_t *f = json_object_get(json_object_get(json_array_get(json_object_get(j, "models"), 0), "figures"),
                                        "decode_short_ctx");
            const char *label = json_string_value(json_object_get(f, "label"));
            CHECK(label && strstr(label, "3 sequences"), "decode label says the batch: %s", label ? label : "(none)");
        }
        json_decref(j);
        tw_bench_params bp = tw_bench_default_params();
        tw_bench_machine mc;
        tw_bench_result r;
        bp.shape = "tiny", bp.quick = 1, bp.n_batch = 65;
        CHECK(tw_bench_machine_init(&mc, 1, NULL) == TW_OK && tw_bench_run(&bp, &mc, &r) == TW_E_ARG,
              "n_batch 65 refused");
    }

    /* full sizes on tiny shapes: the TTFT path (image tokens split over two evals) runs */
    {
        const char *a[] = { "--shape", "tiny", "--reps", "1", "--decode", "2" };
        json_t *j = run_json(a, 6, path);
        CHECK(j != NULL, "full run writes JSON");
        int n = 0;
        if (j) {
            CHECK(check_figures(j, &n) == 0, "full: figures in range");
            CHECK(n == 7, "full: all 7 figures measured");
            json_t *mo = json_array_get(json_object_get(j, "models"), 0);
            CHECK(json_integer_value(json_object_get(mo, "image_tokens")) == 32, "full: 7-tile image of the tiny model has 32 tokens");
        }
        json_decref(j);
    }

    /* quantized types, when this build has them; otherwise the command skips with exit 0 */
    {
        const char *a[] = { "--shape", "tiny", "--quick", "--decode", "2", "--type", "q4" };
        char *argv[16] = { "bench" };
        for (int i = 0; i < 7; i++) argv[i + 1] = (char *)a[i];
        CHECK(tower_cmd_bench(8, argv) == 0, "--type q4 runs or skips cleanly");
    }
    unlink(path);

    /* usage errors */
    {
        char *argv[] = { "bench", "--shape", "7b" };
        CHECK(bench_status(argv, 3) == 2, "unknown --shape is a usage error");
        char *argv1[] = { "bench", "--model", "9b" };
        CHECK(bench_status(argv1, 3) == 2, "--model 9b (shapes under the old name) is a usage error with a hint");
        char *argv2[] = { "bench", "--type", "int3" };
        CHECK(bench_status(argv2, 3) == 2, "unknown --type is a usage error");
        char *argv3[] = { "bench", "--reps", "0" };
        CHECK(bench_status(argv3, 3) == 2, "--reps out of range is a usage error");
        char *argv4[] = { "bench", "--batch", "0" };
        CHECK(bench_status(argv4, 3) == 2, "--batch out of range is a usage error");
    }

    /* work counts against hand computation, tiny model */
    {
        tw_random_spec sp;
        tw_random_spec_preset("tiny", &sp);
        sp.n_threads = 1;
        tw_model *m = NULL;
        CHECK(tw_random_model_new(&sp, &m) == TW_OK, "tiny model builds");
        if (m) {
            const double H = 64, F = 128, V = 512, qd = 64, kvd = 32, L = 3;
            double per_layer = 2 * H * (qd + 2 * kvd) + 2 * qd * H + 3 * 2 * H * F;
            /* 10 tokens from 0: pairs per layer = 55 (window 64 not reached), 4 heads x 16 */
            double want = 10 * L * per_layer + L * 55 * 4 * 16 * 4 + 2 * V * H;
            CHECK(fabs(tw_bench_prefill_flops(m, 0, 10) - want) < 1, "prefill FLOPs");
            /* decode at ctx 100: sliding layers 0 and 2 read 64 keys, layer 1 reads 101 */
            double weights = 0;
            double all = tw_bench_decode_bytes(m, 100, TW_KV_F32, &weights);
            double wexp = H * 2 + V * H * 2 + H * 4 +
                          L * (2 * (H * qd + 2 * H * kvd + qd * H + 3 * H * F) + 4 * H * 4);
            CHECK(fabs(weights - wexp) < 1, "decode weight bytes");
            CHECK(fabs(all - weights - 2 * (64 + 101 + 64) * kvd * 4) < 1, "decode KV bytes");
            tw_random_model_free(m);
        }
    }

    /* the real 2B shapes (text only, 2 distinct layers so the test stays small) */
    {
        tw_random_spec sp;
        CHECK(tw_random_spec_preset("2b", &sp), "preset 2b");
        sp.has_vision = false, sp.n_distinct = 1, sp.n_threads = 2;
        sp.text.n_vocab = 1024;   /* the embedding alone would be 1.2 GB */
        tw_model *m = NULL;
        CHECK(tw_random_model_new(&sp, &m) == TW_OK, "2B-shaped model builds");
        if (m) {
            const tw_gemma2_layer *l = &m->tw.layers[25];
            CHECK(l->wq->shape[0] == 2048 && l->wq->shape[1] == 2304, "q_proj [2048, 2304]");
            CHECK(l->wk->shape[0] == 1024 && l->wk->shape[1] == 2304, "k_proj [1024, 2304]");
            CHECK(l->w_down->shape[0] == 2304 && l->w_down->shape[1] == 9216, "down_proj [2304, 9216]");
            CHECK(l->wq == m->tw.layers[0].wq, "layers cycle one weight set");
            CHECK(m->text.layer_sliding[0] && !m->text.layer_sliding[1], "even layers slide");
            CHECK(m->tw.lm_head == m->tw.embed, "tied head");
            tw_random_model_free(m);
        }
    }
    return th_report();
}
