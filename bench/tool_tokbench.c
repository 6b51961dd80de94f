/*
** tool_tokbench.c — tokenizer benchmark (a helper program, not a test): load time of tokenizer.json,
** then encode speed on the 20 KB paragraph and the 1 MB multilingual text (median of several runs),
** compared with HF Rust tokenizers' figures recorded in bench/bench_results.json.
**
** usage: build/bench/tool_tokbench [TOKENIZER_DIR [PARAGRAPH_TXT [MULTILINGUAL_TXT]]]
**        defaults: $TOWER_FIXTURES/tokenizer (or ../shared/fixtures/tokenizer) and its bench/ files
*/
#include "tower.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* CPU time of this thread: on a shared machine it shows what the code costs when wall time
** includes waiting for a core. */
static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    *len = fread(d, 1, (size_t)n, f);
    fclose(f);
    return d;
}

/* HF Rust's figure for one bench text ("paragraph_20kb" / "multilingual_1mb"), 0 if unknown. */
static double rust_tokens_per_s(const json_t *results, const char *key) {
    const json_t *refs = json_object_get(results, "refs");
    for (size_t i = 0; i < json_array_size(refs); i++) {
        const json_t *r = json_array_get(refs, i);
        const char *name = json_string_value(json_object_get(r, "name"));
        if (name && !strcmp(name, "rust")) {
            if (!key) return json_number_value(json_object_get(r, "load_ms"));
            return json_number_value(json_object_get(json_object_get(r, key), "tokens_per_s"));
        }
    }
    return 0;
}

static int bench_text(const tw_tokenizer *tok, const char *label, const char *path, int reps, const json_t *results,
                      const char *key) {
    size_t len;
    char *text = read_all(path, &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", path);
        return 1;
    }
    double *ms = malloc((size_t)reps * sizeof *ms), *cpu = malloc((size_t)reps * sizeof *cpu);
    size_t n_tokens = 0;
    for (int r = -1; r < reps; r++) {   /* r = -1: warm-up */
        int32_t *ids = NULL;
        double t0 = now_ms(), c0 = cpu_ms();
        if (tw_tokenize(tok, text, len, 0, &ids, &n_tokens) != TW_OK) {
            fprintf(stderr, "tokenize failed: %s\n", tw_last_error());
            free(ms);
            free(cpu);
            free(text);
            return 1;
        }
        double dt = now_ms() - t0, dc = cpu_ms() - c0;
        if (r >= 0) {
            ms[r] = dt;
            cpu[r] = dc;
        }
        tw_free(ids);
    }
    double best = ms[0];
    for (int r = 1; r < reps; r++) best = ms[r] < best ? ms[r] : best;
    double med = median(ms, reps), cmed = median(cpu, reps);
    double tps = n_tokens / (med / 1e3);
    double rust = rust_tokens_per_s(results, key);
    printf("%-18s %9zu bytes -> %7zu tokens  median %8.2f ms  best %8.2f ms  %6.2f M tokens/s  %6.1f MB/s",
           label, len, n_tokens, med, best, tps / 1e6, len / (med / 1e3) / 1e6);
    if (rust > 0) printf("  (%.1fx HF Rust's recorded %.2f M tokens/s)", tps / rust, rust / 1e6);
    printf("\n%-18s cpu median %8.2f ms  %6.2f M tokens/s\n", "", cmed, n_tokens / (cmed / 1e3) / 1e6);
    free(ms);
    free(cpu);
    free(text);
    return 0;
}

int main(int argc, char **argv) {
    const char *fx = getenv("TOWER_FIXTURES");
    char def_dir[1024], def_par[1100], def_big[1100], res_path[1100];
    snprintf(def_dir, sizeof def_dir, "%s/tokenizer", fx && *fx ? fx : "../shared/fixtures");
    const char *dir = argc > 1 ? argv[1] : def_dir;
    snprintf(def_par, sizeof def_par, "%s/bench/paragraph_20kb.txt", dir);
    snprintf(def_big, sizeof def_big, "%s/bench/multilingual_1mb.txt", dir);
    snprintf(res_path, sizeof res_path, "%s/bench/bench_results.json", dir);
    const char *par = argc > 2 ? argv[2] : def_par, *big = argc > 3 ? argv[3] : def_big;

    json_error_t e;
    json_t *results = json_load_file(res_path, 0, &e);   /* optional */

    double load[5], load_cpu[5];
    tw_tokenizer *tok = NULL;
    for (int r = 0; r < 5; r++) {
        if (tok) tw_tokenizer_free(tok);
        double t0 = now_ms(), c0 = cpu_ms();
        if (tw_tokenizer_load(dir, &tok) != TW_OK) {
            fprintf(stderr, "load failed: %s\n", tw_last_error());
            json_decref(results);
            return 1;
        }
        load[r] = now_ms() - t0;
        load_cpu[r] = cpu_ms() - c0;
    }
    double rust_load = rust_tokens_per_s(results, NULL);
    double lm = median(load, 5);
    printf("load %-13s median %8.1f ms  best %8.1f ms", "tokenizer.json", lm, load[0]);
    if (rust_load > 0) printf("  (%.1fx faster than HF Rust's recorded %.0f ms)", rust_load / lm, rust_load);
    printf("\n%-18s cpu median %8.1f ms\n", "", median(load_cpu, 5));
    int rc = bench_text(tok, "paragraph_20kb", par, 50, results, "paragraph_20kb");
    rc |= bench_text(tok, "multilingual_1mb", big, 7, results, "multilingual_1mb");
    tw_tokenizer_free(tok);
    json_decref(results);
    return rc;
}
